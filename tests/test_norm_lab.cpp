// The normalization lab (examples/norm_lab): every experiment's --quick version runs here and
// its invariants are checked on the values it reports; and docs/normalization.md's "Claims,
// tested" section quotes docs/lab/results.csv (the figures `norm_lab` wrote) exactly.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>
// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex> under -O1 and sanitizers
// (see test_norm_docs.cpp): a false positive in the library's code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>

#include "io/fashion_mnist.h"
#include "io/dataset.h"
#include "tests/helpers.h"

namespace fs = std::filesystem;

namespace {

const fs::path kRoot = fs::path(__FILE__).parent_path().parent_path();

std::string read(const fs::path& p) {
  std::stringstream s;
  s << std::ifstream(p).rdbuf();
  return s.str();
}

// results.csv: experiment,kind,key,value -> {"experiment.key" -> value text}
std::map<std::string, std::string> read_results(const fs::path& p, const std::string& kind) {
  std::map<std::string, std::string> out;
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  REQUIRE(line == "experiment,kind,key,value");
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::string e, k, key, v;
    std::getline(ss, e, ','), std::getline(ss, k, ','), std::getline(ss, key, ','), std::getline(ss, v);
    if (k == kind) out[e + "." + key] = v;
  }
  return out;
}

}  // namespace

TEST_CASE("norm_lab docs: the 'Claims, tested' section quotes docs/lab/results.csv") {
  const std::string doc = read(kRoot / "docs/normalization.md");
  const auto begin = doc.find("Claims, tested\n");
  REQUIRE_MESSAGE(begin != std::string::npos, "docs/normalization.md has no 'Claims, tested' section");
  const auto end = doc.find("\n## ", begin + 5);
  const std::string section = doc.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
  const auto values = read_results(kRoot / "docs/lab/results.csv", "value");
  const auto verdicts = read_results(kRoot / "docs/lab/results.csv", "verdict");
  REQUIRE(!values.empty());

  // `experiment.key = value`: the value as the CSV has it
  const std::regex value_re(R"(`([a-z-]+\.[a-z0-9_]+) = ([^`]+)`)");
  int n_values = 0;
  for (auto it = std::sregex_iterator(section.begin(), section.end(), value_re); it != std::sregex_iterator(); ++it, ++n_values) {
    const std::string key = (*it)[1], quoted = (*it)[2];
    INFO("the docs quote ", key, " = ", quoted);
    REQUIRE_MESSAGE(values.count(key) == 1, "not in docs/lab/results.csv");
    CHECK(values.at(key) == quoted);
  }
  CHECK(n_values >= 20);
  // `experiment.claim` **verdict**: every claim of the CSV has its row, with its verdict
  const std::regex verdict_re(R"(`([a-z-]+\.[a-z0-9_]+)` \*\*([a-z ]+)\*\*)");
  std::set<std::string> seen;
  for (auto it = std::sregex_iterator(section.begin(), section.end(), verdict_re); it != std::sregex_iterator(); ++it) {
    const std::string key = (*it)[1], quoted = (*it)[2];
    INFO("the docs give ", key, " the verdict ", quoted);
    REQUIRE_MESSAGE(verdicts.count(key) == 1, "not a claim in docs/lab/results.csv");
    CHECK(verdicts.at(key) == quoted);
    seen.insert(key);
  }
  for (const auto& [key, v] : verdicts) CHECK_MESSAGE(seen.count(key) == 1, key, " (", v, ") has no row in the docs");
}

#ifdef NORMGRAD_HAVE_NORM_LAB
#include "examples/norm_lab/char_lm.h"
#include "examples/norm_lab/experiments.h"

namespace {

// Runs one experiment's --quick version into a temporary folder; checks what every
// experiment owes: claims with a verdict and a source, finite figures, the files it names.
// One thread: the lab's tensors are small (per-op overhead, not arithmetic), and the figures
// in docs/lab were made with --threads 1.
lab::Result quick(const std::string& name, const test::TempDir& dir) {
  test::OmpThreads one(1);
  lab::Config cfg;
  cfg.quick = true;
  cfg.print = false;
  cfg.out = dir.path.string();
  const lab::Experiment* e = lab::find_experiment(name);
  REQUIRE(e != nullptr);
  lab::Result r = lab::run_experiment(*e, cfg);
  CHECK(r.experiment == name);
  REQUIRE(!r.claims.empty());
  for (const auto& c : r.claims) {
    INFO(name, ".", c.id);
    CHECK(!c.text.empty());
    CHECK(!c.source.empty());
    CHECK(!c.because.empty());
  }
  for (const auto& [k, v] : r.values) {
    INFO(name, ".", k);
    CHECK(std::isfinite(v));
  }
  CHECK(fs::exists(fs::path(dir.path) / (name == "covariate-shift" ? "covariate_shift.csv" : name + ".csv")));
  CHECK(fs::exists(fs::path(dir.path) / (name == "covariate-shift" ? "covariate_shift.svg" : name + ".svg")));
  for (const auto& f : r.files) CHECK(fs::file_size(f) > 0);
  return r;
}

std::string header_of(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

// Every `experiment.key` that docs/normalization.md quotes for this experiment is a figure the
// --quick run reports too (the same keys, so a renamed figure fails here, not only in the docs).
void check_doc_keys(const lab::Result& r) {
  const std::string doc = read(kRoot / "docs/normalization.md");
  const std::regex value_re("`" + r.experiment + R"(\.([a-z0-9_]+) = [^`]+`)");
  int n = 0;
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), value_re); it != std::sregex_iterator(); ++it, ++n) {
    INFO("docs/normalization.md quotes ", r.experiment, ".", (*it)[1]);
    CHECK(r.has((*it)[1]));
  }
  CHECK(n > 0);
}

}  // namespace

TEST_CASE("norm_lab: list names thirteen experiments, each once") {
  std::set<std::string> names;
  for (const auto& e : lab::experiments()) names.insert(e.name);
  CHECK(names.size() == 13);
  for (const char* n : {"depth", "lr", "batch", "distributed", "coupling", "invariance", "gaussian", "sharpness", "placement",
                        "sequence", "cnn", "overfitting", "covariate-shift"})
    CHECK(names.count(n) == 1);
}

TEST_CASE("norm_lab coupling --quick: one sample in two batches, N = 1 refused, N = 2 gives +-1") {
  const test::TempDir dir("norm_lab");
  const lab::Result r = quick("coupling", dir);
  CHECK(r.get("bn_train_diff") > 1e-2);  // train mode: the companions move sample 0's output
  CHECK(r.get("bn_eval_diff") == 0.0);   // eval mode: identical, bit for bit
  CHECK(r.get("ln_diff") == 0.0);
  CHECK(r.get("bn_cross_grad") > 1e-2);
  CHECK(r.get("ln_cross_grad") == 0.0);
  CHECK(r.get("n1_refused") == 1.0);
  CHECK(r.get("n2_pm1_dev") < 1e-3);
  CHECK(r.get("n2_pm1_dev") > 0.0);  // +-1 up to eps: |y| = |d/2| / sqrt(d^2/4 + eps) < 1
  CHECK(r.get("bn_feature_mean_max") < 1e-12);
  CHECK(r.get("ln_sample_mean_max") < 1e-12);
  CHECK(r.claim_of("axes").verdict == lab::Verdict::supported);
  CHECK(r.claim_of("bn_independent_samples").verdict == lab::Verdict::refuted);
  CHECK(r.claim_of("eval_independent").verdict == lab::Verdict::supported);
  CHECK(r.claim_of("small_n").verdict == lab::Verdict::supported);
}

TEST_CASE("norm_lab gaussian --quick: BatchNorm keeps skewness and kurtosis exactly") {
  if (!test::fashion_mnist_present()) return;
  const test::TempDir dir("norm_lab");
  const lab::Result r = quick("gaussian", dir);
  CHECK(r.get("skewed_skew_in_mean") > 1.5);  // Exp(1): 2
  CHECK(std::abs(r.get("skewed_skew_bn_mean") - r.get("skewed_skew_in_mean")) < 1e-9);
  CHECK(std::abs(r.get("bimodal_kurt_bn_mean") - r.get("bimodal_kurt_in_mean")) < 1e-9);
  CHECK(r.claim_of("bn_gaussian").verdict == lab::Verdict::refuted);
  CHECK(header_of(fs::path(dir.path) / "gaussian.csv") == "input,skew_in,skew_bn,skew_ln,kurt_in,kurt_bn,kurt_ln,corr_in,corr_ln");
}

TEST_CASE("norm_lab invariance --quick: <W, dL/dW> = 0 and dL/db = 0 before BatchNorm") {
  if (!test::fashion_mnist_present()) return;
  const test::TempDir dir("norm_lab");
  const lab::Result r = quick("invariance", dir);
  CHECK(r.get("bn_max_rel_dot") < 1e-6);
  CHECK(r.get("bn_bias_grad_rel") < 1e-10);
  CHECK(r.get("bn_grad_scale_err") < 1e-6);
  CHECK(r.get("ln_max_rel_dot") < 1e-6);
  CHECK(r.get("ln_bias_grad_rel") > 1e-3);  // LayerNorm does not remove a bias
  CHECK(r.get("bn_eps_rel_dot") > r.get("bn_max_rel_dot"));
  CHECK(r.claim_of("scale_invariant").verdict == lab::Verdict::supported);
  CHECK(header_of(fs::path(dir.path) / "invariance.csv") == "weight_decay,seed,step,w_norm_ratio,effective_lr");
}

TEST_CASE("norm_lab sequence --quick: padding moves BatchNorm's outputs, not LayerNorm's") {
  if (!test::fashion_mnist_present()) return;
  const test::TempDir dir("norm_lab");
  const lab::Result r = quick("sequence", dir);
  CHECK(r.get("bn_padding_change") > 1e-2);
  CHECK(r.get("ln_padding_change") == 0.0);
  CHECK(r.claim_of("padding").verdict == lab::Verdict::supported);
}

TEST_CASE("norm_lab distributed --quick: splitting the batch over ranks changes BatchNorm only") {
  if (!test::fashion_mnist_present()) return;
  const test::TempDir dir("norm_lab");
  const lab::Result r = quick("distributed", dir);
  CHECK(r.get("bn_split_logits_change") > 1e-2);  // per-rank statistics: a different function
  CHECK(r.get("bn_split_grad_change") > 1e-2);
  for (const char* k : {"gn_split_logits_change", "gn_split_grad_change", "ln_split_logits_change", "ln_split_grad_change"})
    CHECK(r.get(k) < 1e-5);  // per-sample statistics: the same up to rounding
  for (const char* k : {"bn_local", "bn_sync", "gn", "ln"})
    for (int b : {2, 4, 8}) {
      const double acc = r.get(fmt::format("{}_b{}_acc_mean", k, b));
      CHECK(acc >= 0.0);
      CHECK(acc <= 1.0);
    }
  CHECK(r.get("bn_sync_b2_acc_mean") > r.get("bn_local_b2_acc_mean"));  // 0.69 vs 0.20 at --quick, 3 seeds
  CHECK(r.claim_of("sync_bn").verdict != lab::Verdict::pending);
  CHECK(header_of(fs::path(dir.path) / "distributed.csv") == "norm,ranks,per_rank_batch,global_batch,seed,lr,diverged,eval_acc");
  check_doc_keys(r);
}

TEST_CASE("norm_lab forward_ranks: per-shard BatchNorm statistics, running statistics from shard 0 only") {
  test::OmpThreads one(1);
  ng::Generator data_gen(3);
  const ng::Tensor x = ng::randn({8, 784}, ng::DType::f32, &data_gen);
  ng::Generator g1(7), g2(7);
  lab::Mlp split({.width = 16, .hidden = 2, .norm = lab::Norm::bn}, g1), alone({.width = 16, .hidden = 2, .norm = lab::Norm::bn}, g2);
  const ng::Tensor y = lab::forward_ranks(split, x, 4);  // 4 shards of 2
  REQUIRE(y.shape() == ng::Shape{8, 10});
  // shard 1 forwarded on its own gives rows 2..3, exactly
  const ng::Tensor y1 = alone.forward(ng::slice(x, 0, 2, 4).contiguous(), true);
  CHECK(test::max_abs_diff(ng::slice(y, 0, 2, 4).contiguous(), y1) == 0.0);
  // running statistics: as after shard 0 alone (DDP keeps rank 0's buffers)
  ng::Generator g3(7);
  lab::Mlp ref({.width = 16, .hidden = 2, .norm = lab::Norm::bn}, g3);
  ref.forward(ng::slice(x, 0, 0, 2).contiguous(), true);
  for (std::size_t k = 0; k < ref.running_mean.size(); ++k) {
    CHECK(test::max_abs_diff(split.running_mean[k], ref.running_mean[k]) == 0.0);
    CHECK(test::max_abs_diff(split.running_var[k], ref.running_var[k]) == 0.0);
  }
  CHECK(split.momentum == std::optional<double>(0.1));  // restored
  CHECK_THROWS_AS(lab::forward_ranks(split, x, 3), std::invalid_argument);
}

TEST_CASE("norm_lab depth, lr, batch --quick: curves, sweeps and the per-layer diagnostics") {
  if (!test::fashion_mnist_present()) return;
  const test::TempDir dir("norm_lab");
  const lab::Result d = quick("depth", dir);
  CHECK(d.get("bn_final_loss_mean") < d.get("none_final_loss_mean"));
  CHECK(d.get("none_act_std_last_init") < d.get("bn_act_std_last_init"));  // the plain net's signal shrinks with depth
  CHECK(header_of(fs::path(dir.path) / "depth_layers.csv") == "norm,when,layer,act_std,grad_norm,update_ratio");
  const lab::Result l = quick("lr", dir);
  CHECK(l.has("bn_log10_max_lr_mean"));
  CHECK(header_of(fs::path(dir.path) / "lr.csv") == "norm,lr,seed,diverged,test_acc,loss_first_quarter");
  const lab::Result b = quick("batch", dir);
  CHECK(b.has("bn_b2_precise_acc_mean"));
  CHECK(header_of(fs::path(dir.path) / "batch.csv") == "norm,batch,seed,lr,eval_acc,train_mode_acc,precise_bn_acc");
}

TEST_CASE("norm_lab placement --quick: the Transformer half is causal, trains, and reports what the docs quote") {
  if (!test::fashion_mnist_present() || !lab::corpus_present(lab::Config{})) return;
  const test::TempDir dir("norm_lab");
  const lab::Result p = quick("placement", dir);
  CHECK(p.get("tf_ln_causal_leak") == 0.0);  // the past's logits do not see the future, bit for bit
  CHECK(p.get("tf_bn_eval_causal_leak") == 0.0);
  CHECK(p.get("tf_bn_train_causal_leak") > 1e-3);  // training-mode BN: batch statistics include later tokens
  const double uniform = p.get("tf_uniform_loss");
  CHECK(uniform == doctest::Approx(std::log(p.get("tf_vocab"))));
  // every LayerNorm run learned something in 30 steps (below a uniform guess), none diverged at 3e-3
  for (const char* layout : {"pre", "post"})
    for (const char* w : {"warm", "nowarm"}) {
      const std::string k = fmt::format("tf_{}_{}_lr0003", layout, w);
      INFO(k);
      CHECK(p.get(k + "_val_mean") < uniform - 0.5);
      CHECK(p.get(k + "_diverged") == 0.0);
    }
  for (const char* n : {"ln", "rms", "bn"}) CHECK(p.get(fmt::format("tf_norm_{}_val_mean", n)) <= uniform);
  CHECK(p.claim_of("preln_warmup").verdict != lab::Verdict::pending);
  CHECK(p.claim_of("bn_transformer").verdict != lab::Verdict::pending);
  CHECK(header_of(fs::path(dir.path) / "placement_transformer.csv") ==
        "layout,norm,warmup,lr,seed,val_loss,train_loss_last10pct,diverged");
  CHECK(header_of(fs::path(dir.path) / "placement_transformer_curves.csv") == "layout,norm,warmup,lr,seed,step,val_loss");
  CHECK(fs::exists(fs::path(dir.path) / "placement_transformer.svg"));
  CHECK(fs::exists(fs::path(dir.path) / "placement_curves.svg"));
  CHECK(fs::exists(fs::path(dir.path) / "placement_norms.svg"));
  check_doc_keys(p);
}

TEST_CASE("norm_lab cnn --quick: four norms in a conv net, each at its best rate, and the figures the docs quote") {
  if (!test::fashion_mnist_present()) return;
  const test::TempDir dir("norm_lab");
  const lab::Result c = quick("cnn", dir);
  for (const char* n : {"none", "bn", "ln", "gn"}) {
    INFO(n);
    const double acc = c.get(fmt::format("{}_test_acc_mean", n)), lr = c.get(fmt::format("{}_best_lr", n));
    CHECK(acc >= 0.0);
    CHECK(acc <= 1.0);
    CHECK((lr == 0.03 || lr == 0.1));  // --quick sweeps these two rates
  }
  CHECK(c.claim_of("bn_for_cnn").verdict != lab::Verdict::pending);
  CHECK(header_of(fs::path(dir.path) / "cnn.csv") == "norm,lr,seed,val_acc,test_acc,final_train_loss,diverged");
  check_doc_keys(c);
}

TEST_CASE("norm_lab sharpness, overfitting, covariate-shift --quick, merging results.csv") {
  if (!test::fashion_mnist_present()) return;
  const test::TempDir dir("norm_lab");
  const lab::Result s = quick("sharpness", dir);
  CHECK(s.get("bn_lr02_sharpness_mean") > 0);
  lab::Result p;  // placement's rows (the experiment runs in its own test case)
  p.experiment = "placement";
  p.set("bn_before_best_lr", 0.01);
  const lab::Result o = quick("overfitting", dir);
  CHECK(o.get("ln_train_acc_mean") >= o.get("ln_test_acc_mean") - 0.05);
  const lab::Result c = quick("covariate-shift", dir);
  CHECK(c.has("noisy_bn_test_acc_mean"));
  // results.csv, the file the docs quote: merged rows in the lab's order
  const std::string path = (fs::path(dir.path) / "results.csv").string();
  lab::merge_results(path, {s, p});
  lab::merge_results(path, {o, c, s});
  CHECK(header_of(path) == "experiment,kind,key,value");
  std::ifstream in(path);
  std::string line;
  std::vector<std::string> order;
  while (std::getline(in, line))
    if (order.empty() || order.back() != line.substr(0, line.find(','))) order.push_back(line.substr(0, line.find(',')));
  CHECK(order == std::vector<std::string>{"experiment", "sharpness", "placement", "overfitting", "covariate-shift"});
}
#endif
