// Optimizers: the first steps against the documented update rules written out by hand with
// plain doubles, parameter groups, convergence on a convex quadratic, exact resume from a
// state_dict, and bad input.
#include <cmath>
#include <functional>
#include <memory>

#include "layers/module.h"
#include "optim/adam.h"
#include "optim/rmsprop.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::optim;

namespace {

// The small problem: loss(w) = sum_i (a_i w_i^2 / 2 + b_i w_i), gradient g_i = a_i w_i + b_i.
const std::vector<double> kA = {1.0, 2.0, 0.5, 3.0, 1.5};
const std::vector<double> kB = {0.3, -0.2, 0.1, 0.5, -0.4};
const std::vector<double> kW0 = {1.0, -2.0, 0.5, 0.7, -1.2};

Tensor make_param(DType d = DType::f64) { return from_vector(kW0, Shape{5}, d).requires_grad_(); }

// Fills w.grad() with the gradient of the loss, through the tape.
void compute_grad(Tensor& w) {
  w.zero_grad();
  const DType d = w.dtype();
  Tensor loss = sum(add(mul(mul(mul(w, w), from_vector(kA, Shape{5}, d)), 0.5), mul(w, from_vector(kB, Shape{5}, d))));
  loss.backward();
}

std::vector<double> grad_ref(const std::vector<double>& w) {
  std::vector<double> g(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) g[i] = kA[i] * w[i] + kB[i];
  return g;
}

// Runs `steps` updates of `opt` on w and of `ref` on a double copy; checks after every step.
void check_against_reference(Optimizer& opt, Tensor& w, const std::function<void(std::vector<double>&, const std::vector<double>&)>& ref,
                             int steps = 3, double tol = 1e-13) {
  std::vector<double> w_ref = kW0;
  for (int t = 1; t <= steps; ++t) {
    compute_grad(w);
    opt.step();
    ref(w_ref, grad_ref(w_ref));
    const auto got = w.to_vector();
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO("step " << t << ", element " << i);
      CHECK(got[i] == doctest::Approx(w_ref[i]).epsilon(tol));
    }
  }
}

// ---- the documented update rules, element by element, in doubles ----

struct SgdRef {
  double lr, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  std::vector<double> buf{};
  void operator()(std::vector<double>& w, const std::vector<double>& grad) {
    const bool first = buf.empty();
    if (first) buf.assign(w.size(), 0.0);
    for (std::size_t i = 0; i < w.size(); ++i) {
      double g = grad[i] + weight_decay * w[i];
      if (momentum != 0) {
        buf[i] = first ? g : momentum * buf[i] + (1 - dampening) * g;
        g = nesterov ? g + momentum * buf[i] : buf[i];
      }
      w[i] -= lr * g;
    }
  }
};

struct AdamRef {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool amsgrad = false, decoupled = false;
  std::vector<double> m{}, v{}, vmax{};
  int t = 0;
  void operator()(std::vector<double>& w, const std::vector<double>& grad) {
    if (m.empty()) m.assign(w.size(), 0.0), v.assign(w.size(), 0.0), vmax.assign(w.size(), 0.0);
    ++t;
    for (std::size_t i = 0; i < w.size(); ++i) {
      double g = grad[i];
      if (decoupled)
        w[i] -= lr * weight_decay * w[i];
      else
        g += weight_decay * w[i];
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      vmax[i] = std::max(vmax[i], v[i]);
      const double mhat = m[i] / (1 - std::pow(beta1, t));
      const double vhat = (amsgrad ? vmax[i] : v[i]) / (1 - std::pow(beta2, t));
      w[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

struct RmsRef {
  double lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0;
  bool centered = false;
  std::vector<double> s{}, a{}, b{};
  void operator()(std::vector<double>& w, const std::vector<double>& grad) {
    if (s.empty()) s.assign(w.size(), 0.0), a.assign(w.size(), 0.0), b.assign(w.size(), 0.0);
    for (std::size_t i = 0; i < w.size(); ++i) {
      const double g = grad[i] + weight_decay * w[i];
      s[i] = alpha * s[i] + (1 - alpha) * g * g;
      double denom = std::sqrt(s[i]) + eps;
      if (centered) {
        a[i] = alpha * a[i] + (1 - alpha) * g;
        denom = std::sqrt(s[i] - a[i] * a[i]) + eps;
      }
      if (momentum > 0) {
        b[i] = momentum * b[i] + g / denom;
        w[i] -= lr * b[i];
      } else {
        w[i] -= lr * g / denom;
      }
    }
  }
};

// A module with a weight matrix, a bias and a normalization-like child (1-d weight and bias).
struct Affine : nn::Module {
  Tensor weight, bias;
  explicit Affine(int n) {
    weight = register_parameter("weight", ones(Shape{n}, DType::f64));
    bias = register_parameter("bias", zeros(Shape{n}, DType::f64));
  }
  Tensor forward(const Tensor& x) override { return add(mul(x, weight), bias); }
  std::string type_name() const override { return "Affine"; }
};
struct Toy : nn::Module {
  Tensor weight, bias;
  std::shared_ptr<Affine> norm;
  Toy() {
    weight = register_parameter("weight", test::rnd({3, 5}, 11, false));
    bias = register_parameter("bias", test::rnd({3}, 12, false));
    norm = register_module("norm", std::make_shared<Affine>(3));
  }
  Tensor forward(const Tensor& x) override { return norm->forward(linear(x, weight, bias)); }
  std::string type_name() const override { return "Toy"; }
};

}  // namespace

// ---- SGD ------------------------------------------------------------------------------------

TEST_CASE("SGD: plain steps follow p <- p - lr g") {
  Tensor w = make_param();
  SGD opt({w}, {.lr = 0.1});
  check_against_reference(opt, w, SgdRef{.lr = 0.1});
  CHECK(opt.state(0, 0).buffers.empty());
  CHECK(opt.state(0, 0).step == 0);
}

TEST_CASE("SGD: momentum with dampening (buffer starts as g)") {
  Tensor w = make_param();
  SGD opt({w}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.2});
  check_against_reference(opt, w, SgdRef{.lr = 0.1, .momentum = 0.9, .dampening = 0.2});
  CHECK(opt.state(0, 0).buffers.count("momentum_buffer") == 1);
}

TEST_CASE("SGD: nesterov momentum with weight decay") {
  Tensor w = make_param();
  SGD opt({w}, {.lr = 0.05, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true});
  check_against_reference(opt, w, SgdRef{.lr = 0.05, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true});
}

TEST_CASE("SGD: the first momentum step by hand") {
  // g = a w0 + b = [1.3, -4.2, 0.35, 2.6, -2.2]; the buffer starts as g, so step 1 is plain SGD.
  Tensor w = make_param();
  SGD opt({w}, {.lr = 0.1, .momentum = 0.9});
  compute_grad(w);
  opt.step();
  test::check_values(w, {1.0 - 0.13, -2.0 + 0.42, 0.5 - 0.035, 0.7 - 0.26, -1.2 + 0.22}, 1e-14);
}

// ---- Adam / AdamW ---------------------------------------------------------------------------

TEST_CASE("Adam: defaults (bias-corrected moments)") {
  Tensor w = make_param();
  Adam opt({w}, {.lr = 0.1});
  check_against_reference(opt, w, AdamRef{.lr = 0.1});
  const ParamState& st = opt.state(0, 0);
  CHECK(st.step == 3);
  CHECK(st.buffers.count("exp_avg") == 1);
  CHECK(st.buffers.count("exp_avg_sq") == 1);
  CHECK(st.buffers.count("max_exp_avg_sq") == 0);
}

TEST_CASE("Adam: the first step moves every element by lr (m_hat / sqrt(v_hat) = sign g)") {
  Tensor w = make_param();
  Adam opt({w}, {.lr = 0.01});
  compute_grad(w);
  opt.step();
  test::check_values(w, {0.99, -1.99, 0.49, 0.69, -1.19}, 1e-9);
}

TEST_CASE("Adam: L2 weight decay and amsgrad") {
  // betas (0.8, 0.5) and a large lr make v shrink on some elements, so amsgrad's max matters.
  const AdamRef ref{.lr = 0.5, .beta1 = 0.8, .beta2 = 0.5, .weight_decay = 0.1, .amsgrad = true};
  Tensor w = make_param();
  Adam opt({w}, {.lr = 0.5, .betas = {0.8, 0.5}, .weight_decay = 0.1, .amsgrad = true});
  check_against_reference(opt, w, ref, 4);
  CHECK(opt.state(0, 0).buffers.count("max_exp_avg_sq") == 1);
  // ... and it is not vacuous: without amsgrad the trajectory differs.
  AdamRef plain = ref, with = ref;
  plain.amsgrad = false;
  std::vector<double> wp = kW0, wa = kW0;
  for (int t = 0; t < 4; ++t) plain(wp, grad_ref(wp)), with(wa, grad_ref(wa));
  CHECK(std::abs(wp[1] - wa[1]) + std::abs(wp[3] - wa[3]) + std::abs(wp[4] - wa[4]) > 1e-3);
}

TEST_CASE("AdamW: decoupled weight decay (default 1e-2), with and without amsgrad") {
  {
    Tensor w = make_param();
    AdamW opt({w}, {.lr = 0.1});
    CHECK(opt.param_groups()[0].get("weight_decay") == 1e-2);
    check_against_reference(opt, w, AdamRef{.lr = 0.1, .weight_decay = 1e-2, .decoupled = true});
  }
  {
    Tensor w = make_param();
    AdamW opt({w}, {.lr = 0.5, .betas = {0.8, 0.5}, .weight_decay = 0.3, .amsgrad = true});
    check_against_reference(opt, w, AdamRef{.lr = 0.5, .beta1 = 0.8, .beta2 = 0.5, .weight_decay = 0.3, .amsgrad = true,
                                            .decoupled = true}, 4);
  }
}

TEST_CASE("Adam: float32 parameters keep float32 state and follow the rule") {
  Tensor w = make_param(DType::f32);
  Adam opt({w}, {.lr = 0.1});
  check_against_reference(opt, w, AdamRef{.lr = 0.1}, 3, 1e-5);
  CHECK(opt.state(0, 0).buffers.at("exp_avg").dtype() == DType::f32);
}

// ---- RMSprop --------------------------------------------------------------------------------

TEST_CASE("RMSprop: defaults") {
  Tensor w = make_param();
  RMSprop opt({w});
  check_against_reference(opt, w, RmsRef{});
  CHECK(opt.state(0, 0).step == 3);
  CHECK(opt.state(0, 0).buffers.count("grad_avg") == 0);
}

TEST_CASE("RMSprop: centered, momentum and weight decay") {
  Tensor w = make_param();
  RMSprop opt({w}, {.lr = 0.01, .alpha = 0.9, .weight_decay = 0.05, .momentum = 0.7, .centered = true});
  check_against_reference(opt, w, RmsRef{.lr = 0.01, .alpha = 0.9, .weight_decay = 0.05, .momentum = 0.7, .centered = true});
  CHECK(opt.state(0, 0).buffers.count("grad_avg") == 1);
  CHECK(opt.state(0, 0).buffers.count("momentum_buffer") == 1);
}

// ---- groups, zero_grad, missing gradients ---------------------------------------------------

TEST_CASE("optimizer: zero_grad sets gradients to none, and a parameter without grad is skipped") {
  Tensor w = make_param(), u = from_vector({1.0, 2.0}, Shape{2}, DType::f64).requires_grad_();
  Adam opt({w, u}, {.lr = 0.1});
  compute_grad(w);  // u gets no gradient
  opt.step();
  CHECK(u.to_vector() == std::vector<double>{1.0, 2.0});
  CHECK(opt.state(0, 1).buffers.empty());
  CHECK(opt.state(0, 1).step == 0);
  CHECK(opt.state(0, 0).step == 1);
  opt.zero_grad();
  CHECK_FALSE(w.grad().defined());
  opt.step();  // nothing to do
  CHECK(opt.state(0, 0).step == 1);
}

TEST_CASE("optimizer: param groups have their own lr and weight decay") {
  Tensor w1 = make_param(), w2 = make_param();
  SGD opt(std::vector<ParamGroup>{{{w1}, {{"lr", 0.05}}}, {{w2}, {{"weight_decay", 0.2}, {"momentum", 0.5}}}},
          {.lr = 0.1, .momentum = 0.9});
  REQUIRE(opt.param_groups().size() == 2);
  CHECK(opt.param_groups()[0].lr() == 0.05);
  CHECK(opt.param_groups()[0].get("momentum") == 0.9);
  CHECK(opt.param_groups()[1].lr() == 0.1);
  SgdRef r1{.lr = 0.05, .momentum = 0.9}, r2{.lr = 0.1, .momentum = 0.5, .weight_decay = 0.2};
  std::vector<double> v1 = kW0, v2 = kW0;
  for (int t = 0; t < 3; ++t) {
    compute_grad(w1);
    compute_grad(w2);
    opt.step();
    r1(v1, grad_ref(v1));
    r2(v2, grad_ref(v2));
  }
  test::check_values(w1, v1, 1e-13);
  test::check_values(w2, v2, 1e-13);
  // A group added later gets the defaults and is validated.
  Tensor w3 = make_param();
  opt.add_param_group({{w3}, {{"lr", 0.3}}});
  CHECK(opt.param_groups()[2].get("momentum") == 0.9);
  CHECK_THROWS_WITH_AS(opt.add_param_group({{make_param()}, {{"lr", -1.0}}}),
                       doctest::Contains("SGD (param group 3): lr must be >= 0, got -1"), ValueError);
  CHECK(opt.param_groups().size() == 3);
}

TEST_CASE("split_decay: no weight decay on biases and 1-d parameters, in one line") {
  Toy m;
  auto groups = split_decay(m.named_parameters(), 1e-2);
  REQUIRE(groups.size() == 2);
  REQUIRE(groups[0].params.size() == 1);
  CHECK(groups[0].params[0].same(m.weight));
  CHECK(groups[0].get("weight_decay") == 1e-2);
  REQUIRE(groups[1].params.size() == 3);  // bias, norm.weight, norm.bias
  CHECK(groups[1].params[0].same(m.bias));
  CHECK(groups[1].params[1].same(m.norm->weight));
  CHECK(groups[1].get("weight_decay") == 0.0);

  // With AdamW: a parameter with zero gradient moves only by its decay.
  AdamW opt(split_decay(m.named_parameters(), 0.5), {.lr = 0.1});
  const auto w_before = m.weight.to_vector(), g_before = m.norm->weight.to_vector();
  for (auto& p : m.parameters()) p.set_grad(zeros_like(p));
  opt.step();
  const auto w_after = m.weight.to_vector(), g_after = m.norm->weight.to_vector();
  for (std::size_t i = 0; i < w_after.size(); ++i) CHECK(w_after[i] == doctest::Approx(w_before[i] * (1 - 0.1 * 0.5)));
  CHECK(g_after == g_before);
  CHECK_THROWS_WITH_AS(split_decay(m.named_parameters(), -1.0), doctest::Contains("split_decay"), ValueError);
}

// ---- convergence --------------------------------------------------------------------------

TEST_CASE("optimizer: every optimizer minimizes a convex quadratic") {
  // loss(w) = ||A w - y||^2 / 2 with A [7, 5], y = A w* (minimum 0 at w*).
  const Tensor A = test::rnd({7, 5}, 21, false), w_star = test::rnd({5, 1}, 22, false);
  const Tensor y = matmul(A, w_star);
  auto loss_of = [&](const Tensor& w) { return mul(sum(pow(sub(matmul(A, w), y), 2.0)), 0.5); };
  const double loss0 = loss_of(zeros(Shape{5, 1}, DType::f64)).item();
  // RMSprop's steps keep a size of about lr near the minimum: it gets a cosine schedule.
  auto run = [&](const std::function<std::unique_ptr<Optimizer>(Tensor)>& make, int steps, bool cosine = false) {
    Tensor w = zeros(Shape{5, 1}, DType::f64).requires_grad_();
    auto opt = make(w);
    std::unique_ptr<CosineAnnealingLR> sched;
    if (cosine) sched = std::make_unique<CosineAnnealingLR>(*opt, steps);
    for (int t = 0; t < steps; ++t) {
      opt->zero_grad();
      loss_of(w).backward();
      opt->step();
      if (sched) sched->step();
    }
    NoGradGuard ng;
    return loss_of(w).item();
  };
  const double bar = 1e-4 * loss0;
  CHECK(run([](Tensor w) { return std::make_unique<SGD>(std::vector<Tensor>{w}, SGDOptions{.lr = 0.02}); }, 400) < bar);
  CHECK(run([](Tensor w) { return std::make_unique<SGD>(std::vector<Tensor>{w}, SGDOptions{.lr = 0.02, .momentum = 0.9, .nesterov = true}); }, 200) < bar);
  CHECK(run([](Tensor w) { return std::make_unique<Adam>(std::vector<Tensor>{w}, AdamOptions{.lr = 0.05}); }, 400) < bar);
  CHECK(run([](Tensor w) { return std::make_unique<Adam>(std::vector<Tensor>{w}, AdamOptions{.lr = 0.05, .amsgrad = true}); }, 400) < bar);
  CHECK(run([](Tensor w) { return std::make_unique<AdamW>(std::vector<Tensor>{w}, AdamWOptions{.lr = 0.05, .weight_decay = 0}); }, 400) < bar);
  CHECK(run([](Tensor w) { return std::make_unique<RMSprop>(std::vector<Tensor>{w}, RMSpropOptions{.lr = 0.1}); }, 400, true) < bar);
  CHECK(run([](Tensor w) { return std::make_unique<RMSprop>(std::vector<Tensor>{w}, RMSpropOptions{.lr = 0.03, .momentum = 0.5, .centered = true}); }, 400, true) < bar);
}

// ---- state_dict / resume --------------------------------------------------------------------

namespace {
using MakeOpt = std::function<std::unique_ptr<Optimizer>(const std::vector<Tensor>&)>;

// Two parameters of different shapes; the second one skips step 2 (no gradient).
std::vector<Tensor> fresh_params() { return {test::rnd({3, 5}, 31), test::rnd({5}, 32)}; }
void loss_step(const std::vector<Tensor>& ps, int t) {
  for (auto p : ps) p.zero_grad();
  Tensor loss = sum(pow(ps[0] - 0.5, 2.0));
  if (t != 2) loss = add(loss, sum(mul(exp(ps[1]), 0.3)));
  loss.backward();
}

void check_resume(const MakeOpt& make) {
  // Uninterrupted: 5 steps.
  auto pa = fresh_params();
  auto oa = make(pa);
  for (int t = 0; t < 5; ++t) loss_step(pa, t), oa->step();
  // Interrupted: 3 steps, then a checkpoint of the parameters and the optimizer's state.
  auto pb = fresh_params();
  auto ob = make(pb);
  for (int t = 0; t < 3; ++t) loss_step(pb, t), ob->step();
  const NamedTensors sd = ob->state_dict();
  std::vector<Tensor> saved_params;
  for (auto& p : pb) saved_params.push_back(p.detach().clone());
  // The state_dict is a copy: training on does not change it.
  std::vector<std::vector<double>> before;
  for (auto& [k, t] : sd) before.push_back(t.to_vector());
  loss_step(pb, 3), ob->step();
  for (std::size_t i = 0; i < sd.size(); ++i) CHECK(sd[i].second.to_vector() == before[i]);
  // Resume: fresh parameters from the checkpoint, a fresh optimizer, load, 2 more steps.
  std::vector<Tensor> pc;
  for (auto& p : saved_params) pc.push_back(p.clone().requires_grad_());
  auto oc = make(pc);
  oc->load_state_dict(sd);
  for (int t = 3; t < 5; ++t) loss_step(pc, t), oc->step();
  for (std::size_t k = 0; k < pa.size(); ++k) CHECK(pa[k].to_vector() == pc[k].to_vector());  // bit-exact
}
}  // namespace

TEST_CASE("optimizer: resuming from state_dict equals uninterrupted training, bit for bit") {
  SUBCASE("SGD nesterov") {
    check_resume([](const std::vector<Tensor>& p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}); });
  }
  SUBCASE("Adam amsgrad") {
    check_resume([](const std::vector<Tensor>& p) { return std::make_unique<Adam>(p, AdamOptions{.lr = 0.1, .weight_decay = 0.1, .amsgrad = true}); });
  }
  SUBCASE("AdamW, two groups") {
    check_resume([](const std::vector<Tensor>& p) {
      return std::make_unique<AdamW>(std::vector<ParamGroup>{{{p[0]}, {{"lr", 0.2}}}, {{p[1]}}}, AdamWOptions{.lr = 0.1});
    });
  }
  SUBCASE("RMSprop centered momentum") {
    check_resume([](const std::vector<Tensor>& p) { return std::make_unique<RMSprop>(p, RMSpropOptions{.momentum = 0.5, .centered = true}); });
  }
}

TEST_CASE("optimizer: state_dict keys and format") {
  auto ps = fresh_params();
  Adam opt(std::vector<ParamGroup>{{{ps[0]}}, {{ps[1]}, {{"lr", 0.5}}}}, {.lr = 0.1});
  loss_step(ps, 2);  // ps[1] has no gradient
  opt.step();
  auto sd = opt.state_dict();
  auto find = [&](const std::string& k) -> Tensor {
    for (auto& [key, t] : sd)
      if (key == k) return t;
    return {};
  };
  CHECK(find("state.0.step").dtype() == DType::i64);
  CHECK(find("state.0.step").item() == 1);
  CHECK(find("state.0.exp_avg").shape() == Shape{3, 5});
  CHECK_FALSE(find("state.1.step").defined());  // never updated: no state
  CHECK(find("param_groups.0.params").to_vector() == std::vector<double>{0});
  CHECK(find("param_groups.1.params").to_vector() == std::vector<double>{1});
  CHECK(find("param_groups.1.lr").item() == 0.5);
  CHECK(find("param_groups.0.beta2").item() == 0.999);
  CHECK(find("param_groups.0.amsgrad").item() == 0);
}

TEST_CASE("optimizer: a schedule resumes with its optimizer") {
  // OneCycleLR on Adam moves lr and beta1 every step; both must come back exactly.
  auto run = [](const std::vector<Tensor>& ps, int from, int to, Adam& opt) {
    for (int t = from; t < to; ++t) loss_step(ps, t), opt.step();
  };
  auto pa = fresh_params();
  Adam oa(pa, {.lr = 0.1});
  OneCycleLR sa(oa, {.max_lr = {0.3}, .total_steps = 10});
  for (int t = 0; t < 6; ++t) run(pa, t, t + 1, oa), sa.step();

  auto pb = fresh_params();
  NamedTensors osd, ssd;
  {
    Adam ob(pb, {.lr = 0.1});
    OneCycleLR sb(ob, {.max_lr = {0.3}, .total_steps = 10});
    for (int t = 0; t < 4; ++t) run(pb, t, t + 1, ob), sb.step();
    osd = ob.state_dict();
    ssd = sb.state_dict();
  }
  Adam oc(pb, {.lr = 0.1});
  OneCycleLR sc(oc, {.max_lr = {0.3}, .total_steps = 10});
  sc.load_state_dict(ssd);  // either order works
  oc.load_state_dict(osd);
  CHECK(sc.last_epoch() == 4);
  for (int t = 4; t < 6; ++t) run(pb, t, t + 1, oc), sc.step();
  for (std::size_t k = 0; k < pa.size(); ++k) CHECK(pa[k].to_vector() == pb[k].to_vector());
  CHECK(oc.param_groups()[0].lr() == oa.param_groups()[0].lr());
  CHECK(oc.param_groups()[0].get("beta1") == oa.param_groups()[0].get("beta1"));
}

TEST_CASE("optimizer: load_state_dict rejects mismatches and leaves the optimizer unchanged") {
  auto ps = fresh_params();
  SGD sgd(ps, {.lr = 0.1, .momentum = 0.9});
  loss_step(ps, 0);
  sgd.step();
  const auto sgd_sd = sgd.state_dict();

  Adam adam(ps, {.lr = 0.1});
  CHECK_THROWS_WITH_AS(adam.load_state_dict(sgd_sd), doctest::Contains("Adam: load_state_dict: unexpected key 'state.0.momentum_buffer'"),
                       ValueError);
  CHECK(adam.param_groups()[0].lr() == 0.1);
  CHECK(adam.state(0, 0).buffers.empty());

  SGD one_group({ps[0]}, {.lr = 0.3});
  CHECK_THROWS_WITH_AS(one_group.load_state_dict(sgd_sd), doctest::Contains("names parameter 1"), ValueError);
  CHECK(one_group.param_groups()[0].lr() == 0.3);

  SGD two_groups(std::vector<ParamGroup>{{{ps[0]}}, {{ps[1]}}}, {.lr = 0.3});
  CHECK_THROWS_WITH_AS(two_groups.load_state_dict(sgd_sd), doctest::Contains("different number of parameters"), ValueError);

  auto other = std::vector<Tensor>{test::rnd({5, 3}, 1), test::rnd({5}, 2)};
  SGD wrong_shape(other, {.lr = 0.3, .momentum = 0.9});
  CHECK_THROWS_WITH_AS(wrong_shape.load_state_dict(sgd_sd), doctest::Contains("shape"), ValueError);
  CHECK(wrong_shape.param_groups()[0].lr() == 0.3);

  NamedTensors bad = sgd_sd;
  bad.emplace_back("param_groups.0.lr.x", scalar(1.0));
  CHECK_THROWS_WITH_AS(sgd.load_state_dict(bad), doctest::Contains("unexpected key 'param_groups.0.lr.x'"), ValueError);
  NamedTensors neg = sgd_sd;
  for (auto& [k, t] : neg)
    if (k == "param_groups.0.lr") t = scalar(-1.0, DType::f64);
  CHECK_THROWS_WITH_AS(sgd.load_state_dict(neg), doctest::Contains("SGD: lr must be >= 0, got -1"), ValueError);
  CHECK(sgd.param_groups()[0].lr() == 0.1);
}

// ---- bad input --------------------------------------------------------------------------------

TEST_CASE("optimizer: bad hyperparameters throw ValueError naming the optimizer and the value") {
  std::vector<Tensor> ps{make_param()};
  CHECK_THROWS_WITH_AS(SGD(ps, {.lr = -0.1}), doctest::Contains("SGD: lr must be >= 0, got -0.1"), ValueError);
  CHECK_THROWS_WITH_AS(SGD(ps, {.momentum = -0.5}), doctest::Contains("SGD: momentum must be >= 0, got -0.5"), ValueError);
  CHECK_THROWS_WITH_AS(SGD(ps, {.weight_decay = -1}), doctest::Contains("SGD: weight_decay must be >= 0, got -1"), ValueError);
  CHECK_THROWS_WITH_AS(SGD(ps, {.nesterov = true}), doctest::Contains("SGD: nesterov momentum requires momentum > 0 and dampening 0"),
                       ValueError);
  CHECK_THROWS_WITH_AS(SGD(ps, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                       doctest::Contains("dampening 0.1"), ValueError);
  CHECK_THROWS_WITH_AS(Adam(ps, {.lr = -1e-3}), doctest::Contains("Adam: lr must be >= 0, got -0.001"), ValueError);
  CHECK_THROWS_WITH_AS(Adam(ps, {.betas = {1.0, 0.999}}), doctest::Contains("Adam: beta1 must be in [0, 1), got 1"), ValueError);
  CHECK_THROWS_WITH_AS(Adam(ps, {.betas = {0.9, -0.1}}), doctest::Contains("Adam: beta2 must be in [0, 1), got -0.1"), ValueError);
  CHECK_THROWS_WITH_AS(Adam(ps, {.eps = -1e-8}), doctest::Contains("Adam: eps must be >= 0, got -1e-08"), ValueError);
  CHECK_THROWS_WITH_AS(AdamW(ps, {.weight_decay = -0.01}), doctest::Contains("AdamW: weight_decay must be >= 0, got -0.01"),
                       ValueError);
  CHECK_THROWS_WITH_AS(RMSprop(ps, {.alpha = -0.5}), doctest::Contains("RMSprop: alpha must be >= 0, got -0.5"), ValueError);
  CHECK_THROWS_WITH_AS(RMSprop(ps, {.momentum = -0.9}), doctest::Contains("RMSprop: momentum must be >= 0, got -0.9"), ValueError);
  CHECK_THROWS_WITH_AS(RMSprop(ps, {.eps = -1}), doctest::Contains("RMSprop: eps must be >= 0, got -1"), ValueError);
  // A bad value in one group names the group.
  CHECK_THROWS_WITH_AS(Adam(std::vector<ParamGroup>{{{make_param()}}, {{make_param()}, {{"beta1", 1.5}}}}),
                       doctest::Contains("Adam (param group 1): beta1 must be in [0, 1), got 1.5"), ValueError);
}

TEST_CASE("optimizer: bad parameter lists") {
  CHECK_THROWS_WITH_AS(SGD(std::vector<Tensor>{}), doctest::Contains("SGD: got an empty parameter list"), ValueError);
  CHECK_THROWS_WITH_AS(Adam(std::vector<ParamGroup>{ParamGroup{}}), doctest::Contains("Adam: got an empty parameter list"), ValueError);
  Tensor w = make_param();
  CHECK_THROWS_WITH_AS(SGD(std::vector<Tensor>{w, w}), doctest::Contains("appears more than once"), ValueError);
  CHECK_THROWS_WITH_AS(Adam(std::vector<ParamGroup>{{{w}}, {{w}}}), doctest::Contains("appears more than once"), ValueError);
  CHECK_THROWS_WITH_AS(SGD(std::vector<Tensor>{mul(w, 2.0)}), doctest::Contains("not a leaf"), ValueError);
  CHECK_THROWS_WITH_AS(SGD(std::vector<Tensor>{Tensor()}), doctest::Contains("undefined"), ValueError);
  CHECK_THROWS_WITH_AS(SGD(std::vector<Tensor>{arange(3, DType::i64)}), doctest::Contains("float32 or float64"), DTypeError);
  CHECK_THROWS_WITH_AS(ParamGroup({w}).get("momentum"), doctest::Contains("no hyperparameter 'momentum'"), ValueError);
}
