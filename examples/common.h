// What the demos share, split by concern in examples/demo/ (header-only, so a test can include
// them too). This header includes them all; a program may include only what it uses.
//   demo/args.h         Args: --flag value / --flag=value / --switch command lines
//   demo/progress.h     set_threads, stop_requested (Ctrl-C), Stopwatch, hms, ProgressBar
//   demo/csv_log.h      CsvLog: the curves as CSV, appended to on resume
//   demo/checkpoint.h   save_training / load_training: a whole run in one safetensors file
//   demo/training.h     train_step, evaluate, fit (the demos' training loop), finish, guarded_main
//   demo/run_options.h  add_run_options, resume_settings: the options every demo shares
//   demo/svg.h          svg::Plot, the one SVG line-plot writer (and demo::svg_line_plot)
#pragma once
#include "demo/args.h"
#include "demo/checkpoint.h"
#include "demo/csv_log.h"
#include "demo/progress.h"
#include "demo/run_options.h"
#include "demo/svg.h"
#include "demo/training.h"
