// BatchNorm or LayerNorm? The question answered by experiment on Fashion-MNIST.
//
//   ./build/release/bin/bn_vs_ln                  about 2 minutes on 2 cores (30000 images per run)
//   ./build/release/bin/bn_vs_ln --images 60000   the whole training set, same table
//
// One small CNN (examples/models.h: conv 1->16 -> norm -> ReLU -> pool -> conv 16->32 -> norm
// -> ReLU -> pool -> linear) is trained with four choices of `norm`:
//   BatchNorm2d          statistics per channel over the batch and the positions
//   LayerNorm([C,H,W])   statistics per sample over all its channels and positions
//   GroupNorm(8, C)      statistics per sample over groups of C/8 channels
//   none
// at batch sizes 2, 8 and 64, each for the same number of training images (one pass over the
// first --images training images, in the same shuffled order, from the same initial weights),
// with SGD (momentum 0.9) and the linear scaling rule lr = 0.05 * batch / 64, annealed along a
// cosine. Then, on the first --test test images:
//   eval acc     accuracy in eval mode (BatchNorm uses its running statistics)
//   train acc    accuracy in training mode, in batches of the training batch size: BatchNorm
//                normalizes with the statistics of each test batch instead (running statistics
//                restored afterwards). The gap between the two is BatchNorm's train/test
//                discrepancy; for the per-sample norms the two are the same by construction.
// Last, a short LSTM comparison: the LayerNorm-LSTM against the plain LSTM (Adam 1e-3).
//
// Prints a table and a closing paragraph computed from the measured numbers, and writes
// bn_vs_ln.csv and bn_vs_ln.svg (accuracy against batch size, one line per normalization).
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "common.h"
#include "io/fashion_mnist.h"
#include "models.h"
#include "optim/adam.h"
#include "optim/sgd.h"

namespace {

struct Row {
  std::string model;  // "cnn" or "lstm"
  demo::Norm norm;
  std::int64_t batch = 0, images = 0, steps = 0;
  double lr = 0, eval_acc = 0, train_acc = 0, final_loss = 0, seconds = 0;
};

std::vector<std::int64_t> parse_list(const std::string& s) {
  std::vector<std::int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  if (out.empty()) throw std::invalid_argument("empty list: '" + s + "'");
  return out;
}

// Trains `model` for one pass over `train` and measures it on `test`.
Row train_and_measure(ng::nn::Module& model, ng::optim::Optimizer& opt, const ng::io::TensorDataset& train,
                      const ng::io::TensorDataset& test, std::int64_t batch, std::uint64_t seed, const std::string& label) {
  ng::io::DataLoader loader(train, {.batch_size = batch, .shuffle = true, .drop_last = true, .seed = seed});
  ng::optim::CosineAnnealingLR sched(opt, loader.num_batches());
  Row r;
  r.batch = batch;
  r.lr = opt.param_groups()[0].lr();
  demo::Stopwatch clock;
  demo::ProgressBar bar(label, loader.num_batches());
  // The final loss is the mean over the last 10% of the steps (a single step is too noisy at batch 2).
  const std::int64_t tail = std::max<std::int64_t>(loader.num_batches() / 10, 1);
  double tail_sum = 0, run_sum = 0;
  for (const ng::io::Batch& b : loader) {
    const double l = demo::train_step(model, opt, b.inputs, b.targets);
    sched.step();
    ++r.steps;
    r.images += b.inputs.size(0);
    run_sum += l;
    if (r.steps > loader.num_batches() - tail) tail_sum += l;
    bar.update(r.steps, run_sum / static_cast<double>(r.steps), r.images);
    if (demo::stop_requested()) throw std::runtime_error("interrupted");
  }
  bar.finish();
  r.final_loss = tail_sum / static_cast<double>(tail);
  r.eval_acc = demo::evaluate(model, test, {.batch_size = 100});
  r.train_acc = demo::evaluate(model, test, {.batch_size = batch, .train_mode = true});
  r.seconds = clock.seconds();
  return r;
}

std::string pct(double a) { return fmt::format("{:.1f}%", 100 * a); }

int run(int argc, char** argv) {
  demo::Args args("bn_vs_ln", "BatchNorm vs LayerNorm vs GroupNorm vs none across batch sizes (examples/bn_vs_ln.cpp).");
  args.option("images", "30000", "training images per run (the first N of the training set, one pass)")
      .option("test", "5000", "test images for the accuracies (the first N of the test set)")
      .option("batch-sizes", "2,8,64", "comma-separated batch sizes")
      .option("lr", "0.05", "SGD learning rate at batch 64 (scaled linearly with the batch size)")
      .option("lstm-images", "16384", "training images per LSTM run (0: skip the LSTM comparison)")
      .option("seed", "1", "seeds the initial weights and the shuffling (the same for every run)")
      .option("threads", "0", "OpenMP and OpenBLAS threads (0: OMP_NUM_THREADS or all cores)")
      .option("data-dir", "", "Fashion-MNIST folder (default: $NORMGRAD_DATA_DIR, else " +
                                  std::string(ng::io::kFashionMnistDefaultDir) + ")")
      .option("csv", "bn_vs_ln.csv", "the table as CSV")
      .option("svg", "bn_vs_ln.svg", "the plot");
  if (!args.parse(argc, argv)) return 0;
  const std::int64_t n_images = args.integer("images"), n_test = args.integer("test"),
                     n_lstm = args.integer("lstm-images");
  const std::vector<std::int64_t> batches = parse_list(args.str("batch-sizes"));
  const double base_lr = args.real("lr");
  const auto seed = static_cast<std::uint64_t>(args.integer("seed"));
  const int threads = demo::set_threads(args.integer("threads"));
  demo::install_sigint_handler();

  const std::string dir = args.str("data-dir");
  ng::io::TensorDataset train =
      ng::io::load_fashion_mnist(ng::io::Split::train, {.dir = dir, .limit = std::max(n_images, n_lstm)});
  ng::io::TensorDataset test = ng::io::load_fashion_mnist(ng::io::Split::test, {.dir = dir, .limit = n_test});
  auto first = [&](std::int64_t n) {
    return ng::io::TensorDataset{ng::slice(train.inputs, 0, 0, n).contiguous(), ng::slice(train.targets, 0, 0, n).contiguous()};
  };
  const ng::io::TensorDataset cnn_train = first(std::min(n_images, train.size()));
  fmt::print("Fashion-MNIST subset: {} training images per run (one pass), {} test images; {} threads; seed {}\n\n",
             cnn_train.size(), test.size(), threads, seed);

  demo::Stopwatch total;
  std::vector<Row> rows;
  const std::vector<demo::Norm> norms = {demo::Norm::batch, demo::Norm::layer, demo::Norm::group, demo::Norm::none};
  for (std::int64_t b : batches) {
    for (demo::Norm n : norms) {
      ng::Generator gen(seed);
      auto model = demo::small_cnn(n, &gen);
      ng::optim::SGD opt(model->parameters(), {.lr = base_lr * static_cast<double>(b) / 64.0, .momentum = 0.9});
      Row r = train_and_measure(*model, opt, cnn_train, test, b, seed, fmt::format("{:>9} batch {:>2}", demo::norm_title(n), b));
      r.model = "cnn";
      r.norm = n;
      fmt::print("  {:<10} batch {:>3}: eval acc {}  train-mode acc {}  final loss {:.3f}  ({:.0f} s)\n", demo::norm_title(n), b,
                 pct(r.eval_acc), pct(r.train_acc), r.final_loss, r.seconds);
      std::fflush(stdout);
      rows.push_back(r);
    }
  }
  if (n_lstm > 0) {
    const ng::io::TensorDataset lstm_train = first(std::min(n_lstm, train.size()));
    for (demo::Norm n : {demo::Norm::layer, demo::Norm::none}) {
      ng::Generator gen(seed);
      demo::SequenceClassifier model(n, 64, &gen);
      ng::optim::Adam opt(model.parameters(), {.lr = 1e-3});
      Row r = train_and_measure(model, opt, lstm_train, test, 64, seed,
                                n == demo::Norm::layer ? "LN-LSTM   batch 64" : "LSTM      batch 64");
      r.model = "lstm";
      r.norm = n;
      fmt::print("  {:<10} batch  64: eval acc {}  final loss {:.3f}  ({:.0f} s)\n",
                 n == demo::Norm::layer ? "LN-LSTM" : "LSTM", pct(r.eval_acc), r.final_loss, r.seconds);
      rows.push_back(r);
    }
  }

  // ---- the table ----
  fmt::print("\n{:<6} {:<10} {:>5} {:>7} {:>6} {:>8} {:>9} {:>10} {:>7} {:>10} {:>6}\n", "model", "norm", "batch", "images",
             "steps", "lr", "eval acc", "train acc", "gap", "final loss", "time");
  for (const Row& r : rows)
    fmt::print("{:<6} {:<10} {:>5} {:>7} {:>6} {:>8.5f} {:>9} {:>10} {:>+6.1f}p {:>10.4f} {:>5.0f}s\n", r.model,
               r.model == "lstm" ? (r.norm == demo::Norm::layer ? "LN-LSTM" : "LSTM") : demo::norm_title(r.norm), r.batch, r.images,
               r.steps, r.lr, pct(r.eval_acc), pct(r.train_acc), 100 * (r.train_acc - r.eval_acc), r.final_loss, r.seconds);
  fmt::print("(eval acc: eval mode; train acc: training mode, batches of the training size; gap = train - eval, "
             "in percentage points; total {:.0f} s)\n",
             total.seconds());

  // ---- CSV ----
  if (!args.str("csv").empty()) {
    demo::CsvLog csv(args.str("csv"), {"model", "norm", "batch_size", "images", "steps", "lr", "test_acc_eval",
                                       "test_acc_train_mode", "gap", "final_train_loss", "seconds"});
    for (const Row& r : rows)
      csv.row({r.model, demo::norm_name(r.norm), std::to_string(r.batch), std::to_string(r.images), std::to_string(r.steps),
               fmt::format("{:.6g}", r.lr), fmt::format("{:.4f}", r.eval_acc), fmt::format("{:.4f}", r.train_acc),
               fmt::format("{:.4f}", r.train_acc - r.eval_acc), fmt::format("{:.4f}", r.final_loss), fmt::format("{:.1f}", r.seconds)});
    fmt::print("table written to {}\n", args.str("csv"));
  }

  // ---- what the numbers say (all computed from `rows`) ----
  auto find = [&](demo::Norm n, std::int64_t b) -> const Row* {
    for (const Row& r : rows)
      if (r.model == "cnn" && r.norm == n && r.batch == b) return &r;
    return nullptr;
  };
  const std::int64_t small = *std::min_element(batches.begin(), batches.end());
  const std::int64_t large = *std::max_element(batches.begin(), batches.end());
  auto line_at = [&](std::int64_t b) {
    std::string s;
    for (demo::Norm n : norms)
      if (const Row* r = find(n, b)) s += fmt::format("{}{} {}", s.empty() ? "" : ", ", demo::norm_title(n), pct(r->eval_acc));
    return s;
  };
  auto best_at = [&](std::int64_t b) {
    const Row* best = nullptr;
    for (demo::Norm n : norms)
      if (const Row* r = find(n, b); r && (!best || r->eval_acc > best->eval_acc)) best = r;
    return best;
  };
  // One standard error of an accuracy p measured on n test images: sqrt(p (1 - p) / n).
  const double se = std::sqrt(0.85 * 0.15 / static_cast<double>(test.size()));
  std::string text = fmt::format("What the numbers show ({} training images per run, {} test images; one standard error of "
                                 "an accuracy near 85% on {} images is {:.1f} points, so smaller differences are noise):\n",
                                 cnn_train.size(), test.size(), test.size(), 100 * se);
  for (const std::int64_t b : {large, small}) {
    const Row* best = best_at(b);  // null only if no run at this batch size
    text += fmt::format("- At batch {}: {} (best: {}).\n", b, line_at(b), best ? demo::norm_title(best->norm) : "-");
  }
  std::string drops;
  for (demo::Norm n : norms) {
    const Row *a = find(n, large), *b = find(n, small);
    if (a && b)
      drops += fmt::format("{}{} {:+.1f}", drops.empty() ? "" : ", ", demo::norm_title(n), 100 * (b->eval_acc - a->eval_acc));
  }
  const Row* any_s = find(demo::Norm::none, small);
  const Row* any_l = find(demo::Norm::none, large);
  text += fmt::format("- Change from batch {} to batch {} (points): {}. Across batch sizes the runs also differ in the "
                      "number of steps ({} vs {} for the same images, with the learning rate scaled to the batch), so "
                      "compare the norms within one batch size first.\n",
                      large, small, drops, any_l ? any_l->steps : 0, any_s ? any_s->steps : 0);
  const Row *bn_s = find(demo::Norm::batch, small), *ln_s = find(demo::Norm::layer, small),
            *gn_s = find(demo::Norm::group, small), *bn_l = find(demo::Norm::batch, large);
  if (bn_s && ln_s && gn_s) {
    const double per_sample = std::max(ln_s->eval_acc, gn_s->eval_acc);
    const double d = 100 * (bn_s->eval_acc - per_sample);
    std::string verdict = std::abs(d) <= 100 * 2 * se
                              ? fmt::format("within two standard errors of the better per-sample norm ({:+.1f} points)", d)
                          : d < 0 ? fmt::format("{:.1f} points behind the better per-sample norm", -d)
                                  : fmt::format("{:.1f} points ahead of the better per-sample norm", d);
    text += fmt::format("- BatchNorm at batch {}: {} vs LayerNorm {} and GroupNorm {}: {}.\n", small, pct(bn_s->eval_acc),
                        pct(ln_s->eval_acc), pct(gn_s->eval_acc), verdict);
  }
  if (bn_s && bn_l) {
    text += fmt::format("- BatchNorm, training-mode vs eval-mode accuracy: {} vs {} ({:+.1f} points) at batch {}; {} vs {} "
                        "({:+.1f} points) at batch {}. ",
                        pct(bn_s->train_acc), pct(bn_s->eval_acc), 100 * (bn_s->train_acc - bn_s->eval_acc), small,
                        pct(bn_l->train_acc), pct(bn_l->eval_acc), 100 * (bn_l->train_acc - bn_l->eval_acc), large);
    const double gs = std::abs(bn_s->train_acc - bn_s->eval_acc), gl = std::abs(bn_l->train_acc - bn_l->eval_acc);
    text += std::abs(gs - gl) <= 2 * se
                ? fmt::format("The two gaps are within two standard errors of each other: at this training length "
                              "BatchNorm's train/test discrepancy does not show beyond noise.\n")
            : gs > gl ? fmt::format("The gap is larger at batch {}: statistics of {} images are a poor stand-in for the running "
                                  "averages, and the running averages themselves were accumulated from such noisy batches.\n",
                                  small, small)
                    : fmt::format("The gap is not larger at batch {} than at batch {} in this run.\n", small, large);
    double max_other = 0;
    for (const Row& r : rows)
      if (r.model == "cnn" && r.norm != demo::Norm::batch) max_other = std::max(max_other, std::abs(r.train_acc - r.eval_acc));
    text += fmt::format("- LayerNorm, GroupNorm and no norm compute the same function in both modes: their largest gap is "
                        "{:.1f} points.\n",
                        100 * max_other);
  }
  const Row *lstm_ln = nullptr, *lstm_plain = nullptr;
  for (const Row& r : rows)
    if (r.model == "lstm") (r.norm == demo::Norm::layer ? lstm_ln : lstm_plain) = &r;
  if (lstm_ln && lstm_plain)
    text += fmt::format("- LSTM (hidden 64, batch 64, {} images, Adam 1e-3): LayerNorm-LSTM {} (final loss {:.3f}) vs plain "
                        "LSTM {} (final loss {:.3f}); {} at {:.1f}x the time per run.\n",
                        lstm_ln->images, pct(lstm_ln->eval_acc), lstm_ln->final_loss, pct(lstm_plain->eval_acc),
                        lstm_plain->final_loss,
                        lstm_ln->eval_acc > lstm_plain->eval_acc ? "LayerNorm ahead" : "LayerNorm not ahead",
                        lstm_ln->seconds / std::max(lstm_plain->seconds, 1e-9));
  fmt::print("\n{}", text);

  // ---- the plot ----
  if (!args.str("svg").empty()) {
    std::vector<demo::Series> series;
    std::vector<double> xs(batches.begin(), batches.end());
    std::sort(xs.begin(), xs.end());
    double lo = 1.0;
    for (demo::Norm n : norms) {
      demo::Series s{demo::norm_title(n), {}, {}};
      for (double b : xs)
        if (const Row* r = find(n, static_cast<std::int64_t>(b))) s.x.push_back(b), s.y.push_back(r->eval_acc), lo = std::min(lo, r->eval_acc);
      series.push_back(s);
    }
    demo::Series bn_train{"BN, train mode", {}, {}, true};
    for (double b : xs)
      if (const Row* r = find(demo::Norm::batch, static_cast<std::int64_t>(b)))
        bn_train.x.push_back(b), bn_train.y.push_back(r->train_acc), lo = std::min(lo, r->train_acc);
    series.push_back(bn_train);
    const double y_min = std::floor(lo * 20) / 20;  // down to a multiple of 5%
    std::ofstream(args.str("svg")) << demo::svg_line_plot(
        fmt::format("Fashion-MNIST test accuracy after {} images", cnn_train.size()), "batch size (log scale)",
        "test accuracy", series, xs, true, y_min, 1.0);
    fmt::print("plot written to {}\n", args.str("svg"));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return demo::guarded_main("bn_vs_ln", run, argc, argv);
}
