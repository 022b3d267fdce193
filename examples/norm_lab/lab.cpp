// The lab's shared part (lab.h): statistics, verdict helpers, the MLP, training, data.
#include "lab.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "autograd/tape.h"
#include "io/data_loader.h"
#include "io/fashion_mnist.h"
#include "optim/sgd.h"

namespace lab {

using ng::Tensor;

Stat stat(const std::vector<double>& v) {
  Stat s;
  s.n = static_cast<int>(v.size());
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return s;
}

std::string show(const Stat& s, int digits) { return fmt::format("{:.{}f} +- {:.{}f}", s.mean, digits, s.std, digits); }

std::string Diff::text() const { return fmt::format("{:+.4g} (2 se = {:.2g})", d, 2 * se); }

Diff compare(const Stat& a, const Stat& b, double floor) {
  Diff r;
  r.d = a.mean - b.mean;
  r.se = std::sqrt(a.std * a.std / std::max(a.n, 1) + b.std * b.std / std::max(b.n, 1));
  // With one seed on either side the noise is unknown: never a difference (--seeds 1 is a demo).
  r.real = a.n >= 2 && b.n >= 2 && std::isfinite(r.d) && std::abs(r.d) > 2 * r.se && std::abs(r.d) > floor;
  return r;
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::supported: return "supported";
    case Verdict::refuted: return "refuted";
    case Verdict::noise: return "not distinguishable from noise";
    case Verdict::pending: return "pending";
  }
  return "?";
}

Verdict verdict_greater(const Diff& d) {
  if (!d.real) return Verdict::noise;
  return d.d > 0 ? Verdict::supported : Verdict::refuted;
}

void Result::set(const std::string& key, double v) {
  for (auto& kv : values)
    if (kv.first == key) {
      kv.second = v;
      return;
    }
  values.emplace_back(key, v);
}
void Result::set(const std::string& key, const Stat& s) {
  set(key + "_mean", s.mean);
  set(key + "_std", s.std);
}
double Result::get(const std::string& key) const {
  for (const auto& kv : values)
    if (kv.first == key) return kv.second;
  throw std::out_of_range(experiment + ": no value '" + key + "'");
}
bool Result::has(const std::string& key) const {
  for (const auto& kv : values)
    if (kv.first == key) return true;
  return false;
}
void Result::claim(std::string id, std::string text, std::string source, Verdict v, std::string because) {
  claims.push_back({std::move(id), std::move(text), std::move(source), v, std::move(because)});
}
const Claim& Result::claim_of(const std::string& id) const {
  for (const auto& c : claims)
    if (c.id == id) return c;
  throw std::out_of_range(experiment + ": no claim '" + id + "'");
}

// ---- data ---------------------------------------------------------------------------------
namespace {
ng::io::TensorDataset flat(const ng::io::TensorDataset& d) {
  return {ng::reshape(d.inputs, {d.inputs.size(0), 784}).contiguous(), d.targets};
}
}  // namespace

Data fashion(const Config& cfg, std::int64_t n_train, std::int64_t n_test) {
  static std::map<std::string, Data> cache;  // by folder: the whole sets, loaded once
  auto it = cache.find(cfg.data_dir);
  if (it == cache.end()) {
    Data all{flat(ng::io::load_fashion_mnist(ng::io::Split::train, {.dir = cfg.data_dir})),
             flat(ng::io::load_fashion_mnist(ng::io::Split::test, {.dir = cfg.data_dir}))};
    it = cache.emplace(cfg.data_dir, all).first;
  }
  const Data& a = it->second;
  return {rows(a.train, 0, std::min(n_train, a.train.size())), rows(a.test, 0, std::min(n_test, a.test.size()))};
}

ng::io::TensorDataset rows(const ng::io::TensorDataset& d, std::int64_t first, std::int64_t last) {
  return {ng::slice(d.inputs, 0, first, last).contiguous(), ng::slice(d.targets, 0, first, last).contiguous()};
}

// ---- the model ----------------------------------------------------------------------------
const char* norm_key(Norm n) {
  switch (n) {
    case Norm::none: return "none";
    case Norm::bn: return "bn";
    case Norm::ln: return "ln";
    case Norm::gn: return "gn";
    case Norm::rms: return "rms";
  }
  return "?";
}
const char* norm_title(Norm n) {
  switch (n) {
    case Norm::none: return "no norm";
    case Norm::bn: return "BatchNorm";
    case Norm::ln: return "LayerNorm";
    case Norm::gn: return "GroupNorm";
    case Norm::rms: return "RMSNorm";
  }
  return "?";
}

Mlp::Mlp(const MlpSpec& s, ng::Generator& gen) : spec(s) {
  auto uniform = [&](ng::Shape shape, double bound) {
    Tensor u = ng::rand(shape, s.dtype, &gen);
    return ng::mul(ng::add(ng::mul(u, 2.0), -1.0), bound).detach().requires_grad_();
  };
  std::int64_t in = s.in;
  for (std::int64_t i = 0; i <= s.hidden; ++i) {
    const std::int64_t out = i == s.hidden ? s.out : s.width;
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    W.push_back(uniform({out, in}, bound));
    b.push_back(uniform({out}, bound));
    in = out;
  }
  for (std::int64_t i = 0; i < s.hidden && s.norm != Norm::none; ++i) {
    gamma.push_back(ng::ones({s.width}, s.dtype).requires_grad_());
    beta.push_back(s.norm == Norm::rms ? Tensor() : ng::zeros({s.width}, s.dtype).requires_grad_());
    if (s.norm == Norm::bn) {
      running_mean.push_back(ng::zeros({s.width}, s.dtype));
      running_var.push_back(ng::ones({s.width}, s.dtype));
    }
  }
  num_batches_tracked = ng::zeros({}, ng::DType::i64);
}

std::vector<Tensor> Mlp::parameters() const {
  std::vector<Tensor> p;
  for (std::size_t i = 0; i < W.size(); ++i) p.push_back(W[i]), p.push_back(b[i]);
  for (std::size_t i = 0; i < gamma.size(); ++i) {
    p.push_back(gamma[i]);
    if (beta[i].defined()) p.push_back(beta[i]);
  }
  return p;
}

void Mlp::reset_running_stats() {
  for (auto& t : running_mean) t.fill_(0.0);
  for (auto& t : running_var) t.fill_(1.0);
  num_batches_tracked.fill_(0.0);
}

Tensor Mlp::forward(const Tensor& x_in, bool training, Trace* trace) {
  Tensor x = x_in;
  const std::int64_t H = spec.width;
  for (std::int64_t i = 0; i < spec.hidden; ++i) {
    const auto k = static_cast<std::size_t>(i);
    Tensor h = ng::linear(x, W[k], b[k]);
    if (trace) trace->pre.push_back(h);
    auto normalize = [&](const Tensor& v) -> Tensor {
      Tensor y;
      switch (spec.norm) {
        case Norm::none: return v;
        case Norm::bn:
          y = ng::batch_norm(v, running_mean[k], running_var[k], gamma[k], beta[k], training, momentum, spec.eps,
                             num_batches_tracked);
          break;
        case Norm::ln: y = ng::layer_norm(v, {H}, gamma[k], beta[k], spec.eps); break;
        case Norm::gn: y = ng::group_norm(v, spec.groups, gamma[k], beta[k], spec.eps); break;
        case Norm::rms: y = ng::rms_norm(v, {H}, gamma[k], spec.eps); break;
      }
      if (spec.shift > 0 && training) {
        Tensor s = ng::empty({H}, spec.dtype), m = ng::empty({H}, spec.dtype);
        for (std::int64_t j = 0; j < H; ++j) {
          const double sv = noise_gen.uniform(1.0, 1.0 + spec.shift), mv = noise_gen.uniform(-spec.shift, spec.shift);
          if (spec.dtype == ng::DType::f64)
            s.data<double>()[j] = sv, m.data<double>()[j] = mv;
          else
            s.data<float>()[j] = static_cast<float>(sv), m.data<float>()[j] = static_cast<float>(mv);
        }
        y = ng::add(ng::mul(y, s), m);
      }
      return y;
    };
    Tensor a;
    if (spec.norm_after_act) {
      a = normalize(spec.tanh ? ng::tanh(h) : ng::relu(h));
    } else {
      Tensor n = normalize(h);
      a = spec.tanh ? ng::tanh(n) : ng::relu(n);
    }
    if (trace) trace->post.push_back(a);
    x = a;
  }
  return ng::linear(x, W.back(), b.back());
}

TrainLog train_mlp(Mlp& m, const ng::io::TensorDataset& data, const TrainSpec& ts,
                   const std::function<void(std::int64_t)>& after_step,
                   const std::function<void(std::int64_t)>& with_grads) {
  TrainLog log;
  ng::optim::SGD opt(m.parameters(), {.lr = ts.lr, .momentum = ts.momentum, .weight_decay = ts.weight_decay});
  ng::io::DataLoader loader(data, {.batch_size = ts.batch, .shuffle = true, .drop_last = true, .seed = ts.seed});
  ng::io::Batch batch;
  for (std::int64_t step = 1; step <= ts.steps; ++step) {
    if (!loader.next(batch)) {
      loader.start_next_epoch();
      loader.next(batch);
    }
    if (log.diverged) {
      log.loss.push_back(std::numeric_limits<double>::quiet_NaN());
      continue;
    }
    opt.zero_grad();
    const Tensor logits = ts.ranks > 1 ? forward_ranks(m, batch.inputs, ts.ranks) : m.forward(batch.inputs, true);
    Tensor loss = ng::cross_entropy(logits, batch.targets);
    const double l = loss.item();
    if (!std::isfinite(l) || l > 100) {
      log.diverged = true;
      log.loss.push_back(std::numeric_limits<double>::quiet_NaN());
      continue;
    }
    loss.backward();
    if (with_grads) with_grads(step);
    opt.step();
    log.loss.push_back(l);
    if (after_step) after_step(step);
  }
  return log;
}

Tensor forward_ranks(Mlp& m, const Tensor& x, std::int64_t ranks) {
  if (ranks < 1 || x.size(0) % ranks != 0)
    throw std::invalid_argument(fmt::format("forward_ranks: a batch of {} does not split into {} equal shards", x.size(0), ranks));
  const auto keep = m.momentum;
  std::vector<Tensor> out;
  for (const Tensor& shard : ng::chunk(x, ranks, 0)) {
    out.push_back(m.forward(shard.contiguous(), true));
    m.momentum = 0.0;  // running <- 1 * running + 0 * shard statistics: shards 1.. leave them alone
  }
  m.momentum = keep;
  return ng::cat(out, 0);
}

double accuracy(Mlp& m, const ng::io::TensorDataset& d, bool train_mode, std::int64_t batch) {
  ng::NoGradGuard no_grad;
  std::vector<Tensor> saved;
  for (const auto& t : m.running_mean) saved.push_back(t.clone());
  for (const auto& t : m.running_var) saved.push_back(t.clone());
  const std::int64_t n = train_mode ? d.size() / batch * batch : d.size();  // whole batches in train mode
  std::int64_t correct = 0;
  for (std::int64_t first = 0; first < n; first += batch) {
    const std::int64_t last = std::min(n, first + batch);
    ng::io::TensorDataset part = rows(d, first, last);
    Tensor pred = ng::argmax(m.forward(part.inputs, train_mode), 1);
    const std::int64_t* p = pred.data<std::int64_t>();
    const std::int64_t* t = part.targets.data<std::int64_t>();
    for (std::int64_t i = 0; i < last - first; ++i) correct += p[i] == t[i];
  }
  std::size_t k = 0;
  for (auto& t : m.running_mean) t.copy_(saved[k++]);
  for (auto& t : m.running_var) t.copy_(saved[k++]);
  return n > 0 ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
}

double eval_loss(Mlp& m, const ng::io::TensorDataset& d) {
  ng::NoGradGuard no_grad;
  return ng::cross_entropy(m.forward(d.inputs, false), d.targets).item();
}

void recompute_bn_stats(Mlp& m, const ng::io::TensorDataset& d, std::int64_t batch) {
  ng::NoGradGuard no_grad;
  const auto keep = m.momentum;
  m.reset_running_stats();
  m.momentum = std::nullopt;  // cumulative average over the batches
  for (std::int64_t first = 0; first + batch <= d.size(); first += batch) m.forward(rows(d, first, first + batch).inputs, true);
  m.momentum = keep;
}

// ---- helpers ------------------------------------------------------------------------------
double norm2(const Tensor& t) { return std::sqrt(dot(t, t)); }
double dot(const Tensor& a, const Tensor& b) {
  const auto va = a.to_vector(), vb = b.to_vector();
  double s = 0;
  for (std::size_t i = 0; i < va.size(); ++i) s += va[i] * vb[i];
  return s;
}
double mean_of(const std::vector<double>& v, std::size_t from, std::size_t to) {
  double s = 0;
  to = std::min(to, v.size());
  if (to <= from) return std::numeric_limits<double>::quiet_NaN();
  for (std::size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}
std::vector<double> log_space(double lo, double hi, int n) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i)
    v.push_back(lo * std::pow(hi / lo, n == 1 ? 0.0 : static_cast<double>(i) / (n - 1)));
  return v;
}
std::string join_path(const std::string& dir, const std::string& file) {
  return (std::filesystem::path(dir) / file).string();
}
void write_text(const Config& cfg, Result& r, const std::string& name, const std::string& text) {
  if (cfg.out.empty()) return;
  std::filesystem::create_directories(cfg.out);
  const std::string path = join_path(cfg.out, name);
  std::ofstream f(path);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + path);
  r.files.push_back(path);
}
void write_csv(const Config& cfg, Result& r, const std::string& name, const std::vector<std::string>& header,
               const std::vector<std::vector<std::string>>& rows_) {
  std::string s;
  for (std::size_t i = 0; i < header.size(); ++i) s += (i ? "," : "") + header[i];
  s += "\n";
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < row.size(); ++i) s += (i ? "," : "") + row[i];
    s += "\n";
  }
  write_text(cfg, r, name, s);
}
std::string num(double v, int sig) {
  if (std::isnan(v)) return "nan";
  return fmt::format("{:.{}g}", v, sig);
}

}  // namespace lab
