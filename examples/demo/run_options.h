// The command-line options every Fashion-MNIST demo shares, and --resume: the settings a
// checkpoint was made with become the run's settings.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "args.h"
#include "io/fashion_mnist.h"
#include "io/safetensors.h"

namespace demo {

// "0.05" and "5e-2" are the same setting; otherwise the text must match.
inline bool same_setting(const std::string& a, const std::string& b) {
  if (a == b) return true;
  try {
    std::size_t ua = 0, ub = 0;
    const double x = std::stod(a, &ua), y = std::stod(b, &ub);
    return ua == a.size() && ub == b.size() && x == y;
  } catch (const std::exception&) {
    return false;
  }
}

// For --resume: the settings a checkpoint was made with become this run's settings. A flag the
// user gave explicitly with a different value is an error (the run could not continue exactly).
// The options every Fashion-MNIST demo shares (data, threads, checkpoints, logging), added
// after the demo's own model and optimizer options.
inline Args& add_run_options(Args& args, const std::string& csv_default) {
  return args.option("limit", "-1", "train on the first N training images only (-1: all 60000)")
      .option("threads", "0", "threads (0: OMP_NUM_THREADS or all cores)")
      .option("data-dir", "", "Fashion-MNIST folder (default: $NORMGRAD_DATA_DIR, else " +
                                  std::string(ng::io::kFashionMnistDefaultDir) + ")")
      .option("checkpoint", "", "save the training state here at each epoch end (and on Ctrl-C)")
      .flag("resume", "continue the run saved in --checkpoint exactly where it stopped")
      .option("csv", csv_default, "write the curves here ('' for none)")
      .option("log-every", "100", "a CSV row every N steps besides the per-epoch rows")
      .option("max-steps", "-1", "stop after N steps in total as if interrupted (checkpoint, exit)")
      .option("eval-batch", "100", "test images per forward pass when measuring accuracy");
}

void apply_checkpoint_settings(Args& args, const std::string& path, const std::vector<std::string>& keys);

// With --resume, the run's settings (`keys`) come from --checkpoint's file.
inline void resume_settings(Args& args, const std::vector<std::string>& keys) {
  if (!args.on("resume")) return;
  if (args.str("checkpoint").empty()) throw std::invalid_argument("--resume needs --checkpoint PATH");
  apply_checkpoint_settings(args, args.str("checkpoint"), keys);
}

inline void apply_checkpoint_settings(Args& args, const std::string& path, const std::vector<std::string>& keys) {
  ng::io::Metadata meta = ng::io::load_safetensors(path).metadata;
  std::string conflicts;
  for (const std::string& k : keys) {
    auto it = meta.find(k);
    if (it == meta.end()) throw std::runtime_error(fmt::format("{}: checkpoint has no setting '{}'", path, k));
    if (args.given(k) && !same_setting(args.str(k), it->second))
      conflicts += fmt::format("\n  --{} {} (the checkpoint was made with {})", k, args.str(k), it->second);
    args.set(k, it->second);
  }
  if (!conflicts.empty())
    throw std::invalid_argument("--resume continues a run with its own settings; drop these flags:" + conflicts);
}

}  // namespace demo
