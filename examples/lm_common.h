// What the character-level language-model demos (makemore, tiny_gpt) share, on top of
// examples/common.h:
//   eval_loss      mean cross-entropy in nats per predicted character over a data set
//                  (eval mode, no tape)
//   fit_lm         demo::fit's loop for language models: progress bar, CSV of the curves,
//                  a checkpoint at each epoch end and on Ctrl-C, exact resume, --max-steps;
//                  it reports validation nats/char where fit reports test accuracy
//   sample_next    one character drawn from softmax(logits / temperature)
#pragma once
#include <cmath>

#include "common.h"

namespace demo {

// Mean cross-entropy (nats per predicted character) of the model's logits, (B, V) for targets
// (B) or (B, V, T) for targets (B, T), over `data` in batches; eval mode, restored afterwards.
inline double eval_loss(ng::nn::Module& model, const ng::io::TensorDataset& data, std::int64_t batch = 256,
                        std::int64_t limit = -1) {
  const bool was_training = model.is_training();
  ng::NoGradGuard no_grad;
  model.eval();
  const std::int64_t n = limit >= 0 ? std::min(limit, data.size()) : data.size();
  double sum = 0;
  std::int64_t count = 0;
  for (std::int64_t first = 0; first < n; first += batch) {
    const std::int64_t last = std::min(n, first + batch);
    const ng::Tensor x = ng::slice(data.inputs, 0, first, last).contiguous();
    const ng::Tensor y = ng::slice(data.targets, 0, first, last).contiguous();
    sum += ng::cross_entropy(model(x), y, ng::Reduction::sum).item();
    count += y.numel();
  }
  model.train(was_training);
  return count > 0 ? sum / static_cast<double>(count) : 0.0;
}

struct LmStats {
  std::int64_t epoch = 0;  // 1-based
  double train_loss = 0, val_loss = 0, seconds = 0;
};

struct LmResult {
  std::vector<LmStats> epochs;  // epochs that ended in this session
  std::int64_t step = 0;
  bool interrupted = false;
  double seconds = 0;
};

// Trains for cfg.epochs passes of `loader` (cfg as demo::fit's; cfg.eval.limit bounds the
// validation set). CSV columns: epoch, step, train_loss, val_loss, lr, seconds. `rng`, if
// given, is the generator the model's dropout draws from: its state is saved in checkpoints
// and restored on resume, so a resumed run is exact with dropout too.
inline LmResult fit_lm(const FitConfig& cfg, ng::nn::Module& model, ng::optim::Optimizer& opt,
                       ng::optim::LRScheduler* sched, ng::io::DataLoader& loader, const ng::io::TensorDataset& val,
                       ng::Generator* rng = nullptr) {
  LmResult res;
  const std::int64_t nb = loader.num_batches();
  const ResumedRun resumed = resume_run(cfg, model, opt, sched, loader);
  if (rng && cfg.resume) rng->set_state(resumed.meta.at("rng"));
  res.step = resumed.step;
  const double seconds_before = resumed.seconds;
  double loss_sum = resumed.loss_sum;
  std::int64_t loss_count = resumed.loss_count;
  CsvLog csv(cfg.csv, {"epoch", "step", "train_loss", "val_loss", "lr", "seconds"}, cfg.resume ? res.step : -1);
  Stopwatch clock;
  auto elapsed = [&] { return seconds_before + clock.seconds(); };
  auto lr = [&] { return opt.param_groups().at(0).lr(); };
  auto save = [&](const std::string& path) {
    ng::io::Metadata m = cfg.settings;
    m["program"] = cfg.program;
    m["step"] = std::to_string(res.step);
    m["loss_sum"] = exact(loss_sum);
    m["loss_count"] = std::to_string(loss_count);
    m["seconds"] = exact(elapsed());
    if (rng) m["rng"] = rng->state();
    save_training(path, model, opt, sched, loader, m);
  };
  while (true) {
    const bool finished = loader.batch_index() >= nb;
    const std::int64_t epoch = finished ? loader.epoch() + 1 : loader.epoch();
    if (epoch >= cfg.epochs) break;
    if (finished) loss_sum = 0, loss_count = 0;
    std::fflush(stdout);
    ProgressBar bar(fmt::format("epoch {}/{}", epoch + 1, cfg.epochs), nb, finished ? 0 : loader.batch_index());
    std::int64_t samples = 0, interval_n = 0;
    double interval_sum = 0;
    bool stop = false;
    for (const ng::io::Batch& b : loader) {
      const double l = train_step(model, opt, b.inputs, b.targets);
      if (!std::isfinite(l))
        throw std::runtime_error(fmt::format("the training loss became {} at step {}", l, res.step + 1));
      if (sched) sched->step();
      ++res.step;
      loss_sum += l, ++loss_count, interval_sum += l, ++interval_n;
      samples += b.inputs.size(0);
      if (!cfg.quiet) bar.update(loader.batch_index(), loss_sum / static_cast<double>(loss_count), samples);
      if (cfg.log_every > 0 && res.step % cfg.log_every == 0) {
        const double e =
            static_cast<double>(epoch) + static_cast<double>(loader.batch_index()) / static_cast<double>(nb);
        csv.row({fmt::format("{:.4f}", e), std::to_string(res.step),
                 fmt::format("{:.6f}", interval_sum / static_cast<double>(interval_n)), "", fmt::format("{:.6g}", lr()),
                 fmt::format("{:.2f}", elapsed())});
        interval_sum = 0, interval_n = 0;
      }
      if (stop_requested() || res.step == cfg.stop_after_step) {
        stop = true;
        break;
      }
    }
    if (!cfg.quiet) bar.finish();
    if (stop && loader.batch_index() < nb) {
      res.interrupted = true;
      const std::string path = cfg.checkpoint.empty() ? cfg.interrupt_checkpoint : cfg.checkpoint;
      save(path);
      if (!cfg.quiet)
        fmt::print(
            "\nstopped in epoch {} at batch {}/{} (step {}). Checkpoint saved to {}.\nResume with:  {} --checkpoint {} "
            "--resume\n",
            epoch + 1, loader.batch_index(), nb, res.step, path, cfg.program, path);
      break;
    }
    LmStats st;
    st.epoch = epoch + 1;
    st.train_loss = loss_sum / static_cast<double>(std::max<std::int64_t>(loss_count, 1));
    st.val_loss = eval_loss(model, val, cfg.eval.batch_size, cfg.eval.limit);
    st.seconds = elapsed();
    res.epochs.push_back(st);
    if (!cfg.quiet)
      fmt::print("epoch {}/{}  train loss {:.4f}  val loss {:.4f} nats/char  lr {:.4g}  {:.0f} s\n", st.epoch,
                 cfg.epochs, st.train_loss, st.val_loss, lr(), st.seconds);
    std::fflush(stdout);
    csv.row({std::to_string(epoch + 1), std::to_string(res.step), fmt::format("{:.6f}", st.train_loss),
             fmt::format("{:.6f}", st.val_loss), fmt::format("{:.6g}", lr()), fmt::format("{:.2f}", elapsed())});
    if (stop || stop_requested()) {
      res.interrupted = true;
      const std::string path = cfg.checkpoint.empty() ? cfg.interrupt_checkpoint : cfg.checkpoint;
      save(path);
      if (!cfg.quiet) fmt::print("stopped after epoch {}. Checkpoint saved to {}.\n", epoch + 1, path);
      break;
    }
    if (!cfg.checkpoint.empty()) save(cfg.checkpoint);
  }
  res.seconds = elapsed();
  return res;
}

// Switches, declared out of line (GCC 12 at -O3 gives a false -Wrestrict on Args::flag's
// std::string assignment when it is inlined into these demos: GCC bug 105329).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wrestrict"
[[gnu::noinline]] inline void add_flags(Args& args, const std::vector<std::pair<std::string, std::string>>& flags) {
  for (const auto& [name, help] : flags) args.flag(name, help);
}
#pragma GCC diagnostic pop

// One index drawn from softmax(logits / temperature) (logits: a 1-d float tensor).
inline std::int64_t sample_next(const ng::Tensor& logits, double temperature, ng::Generator& gen) {
  const std::vector<double> z = logits.to_vector();
  double mx = -INFINITY, sum = 0;
  for (double v : z) mx = std::max(mx, v / temperature);
  std::vector<double> p(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) sum += p[i] = std::exp(z[i] / temperature - mx);
  double u = gen.uniform() * sum;
  for (std::size_t i = 0; i < p.size(); ++i)
    if ((u -= p[i]) < 0) return static_cast<std::int64_t>(i);
  return static_cast<std::int64_t>(p.size() - 1);
}

}  // namespace demo
