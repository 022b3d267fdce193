// LR schedules: each lr sequence against PyTorch's closed forms (written out here), the
// values PyTorch's documentation lists, SequentialLR, state_dict and bad input.
#include <cmath>
#include <memory>
#include <numbers>

#include "optim/adam.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::optim;

namespace {
constexpr double kPi = std::numbers::pi;

std::vector<Tensor> one_param() { return {test::rnd({3}, 1)}; }

// Checks lr at epochs 0..n-1 (epoch 0 right after construction, then one step() each).
template <class F>
void check_sequence(LRScheduler& s, Optimizer& opt, int n, F expected, double tol = 1e-15) {
  for (int e = 0; e < n; ++e) {
    if (e > 0) s.step();
    INFO("epoch " << e);
    REQUIRE(s.last_epoch() == e);
    for (std::size_t g = 0; g < opt.param_groups().size(); ++g) {
      const double want = expected(g, e);
      CHECK(s.get_last_lr()[g] == doctest::Approx(want).epsilon(tol));
      CHECK(opt.param_groups()[g].lr() == s.get_last_lr()[g]);
      CHECK(s.lr_at(g, e) == s.get_last_lr()[g]);
    }
  }
}
}  // namespace

TEST_CASE("StepLR: lr = base gamma^floor(epoch / step_size)") {
  SGD opt(one_param(), {.lr = 0.1});
  StepLR s(opt, 3, 0.5);
  CHECK(opt.param_groups()[0].get("initial_lr") == 0.1);
  check_sequence(s, opt, 10, [](std::size_t, int e) { return 0.1 * std::pow(0.5, e / 3); });
}

TEST_CASE("StepLR: PyTorch's documented example (0.05, step 30, gamma 0.1)") {
  SGD opt(one_param(), {.lr = 0.05});
  StepLR s(opt, 30);
  for (int e = 0; e < 95; ++e) {
    const double want = e < 30 ? 0.05 : e < 60 ? 0.005 : e < 90 ? 0.0005 : 0.00005;
    CHECK(s.get_last_lr()[0] == doctest::Approx(want).epsilon(1e-12));
    s.step();
  }
}

TEST_CASE("MultiStepLR: gamma per milestone passed (unsorted input, repeats count twice)") {
  SGD opt(std::vector<ParamGroup>{{one_param()}, {one_param(), {{"lr", 1.0}}}}, {.lr = 0.1});
  MultiStepLR s(opt, {6, 2, 6}, 0.5);
  check_sequence(s, opt, 9, [](std::size_t g, int e) {
    const double base = g == 0 ? 0.1 : 1.0;
    const int passed = (e >= 2) + 2 * (e >= 6);
    return base * std::pow(0.5, passed);
  });
}

TEST_CASE("ExponentialLR: lr = base gamma^epoch") {
  Adam opt(one_param(), {.lr = 0.2});
  ExponentialLR s(opt, 0.9);
  check_sequence(s, opt, 8, [](std::size_t, int e) { return 0.2 * std::pow(0.9, e); });
}

TEST_CASE("CosineAnnealingLR: eta_min + (base - eta_min)(1 + cos(pi e / T_max)) / 2, past T_max too") {
  SGD opt(one_param(), {.lr = 0.1});
  CosineAnnealingLR s(opt, 5, 0.01);
  check_sequence(s, opt, 13, [](std::size_t, int e) { return 0.01 + (0.1 - 0.01) * (1 + std::cos(kPi * e / 5)) / 2; });
  // Anchors: the base at 0, eta_min at T_max, the midpoint halfway.
  CHECK(s.lr_at(0, 0) == doctest::Approx(0.1));
  CHECK(s.lr_at(0, 5) == doctest::Approx(0.01));
  CHECK(s.lr_at(0, 10) == doctest::Approx(0.1));
}

TEST_CASE("LinearLR: warmup from start_factor to end_factor over total_iters") {
  SUBCASE("PyTorch's documented example (0.05, start 0.5, 4 iters)") {
    SGD opt(one_param(), {.lr = 0.05});
    LinearLR s(opt, 0.5, 1.0, 4);
    const std::vector<double> want = {0.025, 0.03125, 0.0375, 0.04375, 0.05, 0.05, 0.05};
    check_sequence(s, opt, 7, [&](std::size_t, int e) { return want[static_cast<std::size_t>(e)]; }, 1e-13);
  }
  SUBCASE("defaults: 1/3 -> 1 over 5, two groups") {
    SGD opt(std::vector<ParamGroup>{{one_param()}, {one_param(), {{"lr", 0.3}}}}, {.lr = 0.1});
    LinearLR s(opt);
    check_sequence(s, opt, 8, [](std::size_t g, int e) {
      const double base = g == 0 ? 0.1 : 0.3;
      return base * (1.0 / 3 + (1 - 1.0 / 3) * std::min(e, 5) / 5.0);
    });
  }
}

namespace {
// PyTorch's OneCycleLR, written out independently: phases as (end_step, start, end) and
// cosine or linear annealing.
struct OneCycleRef {
  double max_lr, pct = 0.3, div = 25, final_div = 1e4;
  int total;
  bool three = false, cos = true;
  double anneal(double a, double b, double x) const {
    return cos ? b + (a - b) / 2 * (std::cos(kPi * x) + 1) : a + (b - a) * x;
  }
  // Returns {lr, momentum} at step n.
  std::pair<double, double> at(int n) const {
    const double init = max_lr / div, min = init / final_div;
    struct P { double end, a, b, ma, mb; };
    std::vector<P> ph;
    if (three)
      ph = {{pct * total - 1, init, max_lr, 0.95, 0.85}, {2 * pct * total - 2, max_lr, init, 0.85, 0.95}, {total - 1.0, init, min, 0.95, 0.95}};
    else
      ph = {{pct * total - 1, init, max_lr, 0.95, 0.85}, {total - 1.0, max_lr, min, 0.85, 0.95}};
    double start = 0;
    for (std::size_t i = 0; i < ph.size(); ++i) {
      if (n <= ph[i].end || i + 1 == ph.size()) {
        const double x = (n - start) / (ph[i].end - start);
        return {anneal(ph[i].a, ph[i].b, x), anneal(ph[i].ma, ph[i].mb, x)};
      }
      start = ph[i].end;
    }
    return {0, 0};
  }
};
}  // namespace

TEST_CASE("OneCycleLR: two-phase cosine, lr and SGD momentum") {
  SGD opt(one_param(), {.lr = 0.5, .momentum = 0.9});
  OneCycleLR s(opt, {.max_lr = {1.0}, .total_steps = 20});
  const OneCycleRef ref{.max_lr = 1.0, .total = 20};
  CHECK(s.get_last_lr()[0] == doctest::Approx(1.0 / 25));  // initial_lr = max_lr / div_factor
  for (int n = 0; n <= 20; ++n) {
    if (n > 0) s.step();
    INFO("step " << n);
    CHECK(s.get_last_lr()[0] == doctest::Approx(ref.at(n).first).epsilon(1e-14));
    CHECK(opt.param_groups()[0].get("momentum") == doctest::Approx(ref.at(n).second).epsilon(1e-14));
  }
  // Anchors: max_lr at the end of warmup (step 0.3*20 - 1 = 5), min_lr at the last step.
  CHECK(s.lr_at(0, 5) == doctest::Approx(1.0));
  CHECK(s.lr_at(0, 19) == doctest::Approx(1.0 / 25 / 1e4));
  CHECK(opt.param_groups()[0].get("max_lr") == 1.0);
  CHECK(opt.param_groups()[0].get("min_lr") == doctest::Approx(4e-6));
  CHECK_THROWS_WITH_AS(s.step(), doctest::Contains("OneCycleLR: tried to step 21 times, but total_steps is 20"), ValueError);
  CHECK(s.last_epoch() == 20);
}

TEST_CASE("OneCycleLR: three-phase linear, per-group max_lr, Adam's beta1, epochs x steps") {
  Adam opt(std::vector<ParamGroup>{{one_param()}, {one_param()}}, {.lr = 0.1});
  OneCycleLR s(opt, {.max_lr = {0.4, 2.0}, .epochs = 3, .steps_per_epoch = 7, .pct_start = 0.25, .anneal_cos = false, .three_phase = true});
  CHECK(s.total_steps() == 21);
  const OneCycleRef r0{.max_lr = 0.4, .pct = 0.25, .total = 21, .three = true, .cos = false};
  const OneCycleRef r1{.max_lr = 2.0, .pct = 0.25, .total = 21, .three = true, .cos = false};
  for (int n = 0; n < 21; ++n) {
    if (n > 0) s.step();
    INFO("step " << n);
    CHECK(s.get_last_lr()[0] == doctest::Approx(r0.at(n).first).epsilon(1e-13));
    CHECK(s.get_last_lr()[1] == doctest::Approx(r1.at(n).first).epsilon(1e-13));
    CHECK(opt.param_groups()[1].get("beta1") == doctest::Approx(r0.at(n).second).epsilon(1e-13));
    CHECK(opt.param_groups()[1].get("beta2") == 0.999);
  }
}

TEST_CASE("SequentialLR: linear warmup, then cosine restarting at its epoch 0") {
  SGD opt(one_param(), {.lr = 0.1});
  auto warmup = std::make_shared<LinearLR>(opt, 0.1, 1.0, 4);
  auto cosine = std::make_shared<CosineAnnealingLR>(opt, 6);
  SequentialLR s(opt, {warmup, cosine}, {4});
  check_sequence(s, opt, 12, [](std::size_t, int e) {
    if (e < 4) return 0.1 * (0.1 + 0.9 * e / 4.0);
    return 0.1 * (1 + std::cos(kPi * (e - 4) / 6)) / 2;
  });
}

TEST_CASE("LRScheduler: state_dict round trip restores the lr and the sequence") {
  SGD a(one_param(), {.lr = 0.1});
  CosineAnnealingLR sa(a, 10, 0.001);
  for (int e = 0; e < 4; ++e) sa.step();
  const auto sd = sa.state_dict();

  SGD b(one_param(), {.lr = 0.1});
  CosineAnnealingLR sb(b, 10, 0.001);
  sb.load_state_dict(sd);
  CHECK(sb.last_epoch() == 4);
  CHECK(b.param_groups()[0].lr() == a.param_groups()[0].lr());
  for (int e = 0; e < 3; ++e) sa.step(), sb.step();
  CHECK(sb.get_last_lr() == sa.get_last_lr());

  // SequentialLR stores its schedules' states too.
  SGD c(one_param(), {.lr = 0.1}), d(one_param(), {.lr = 0.1});
  SequentialLR sc(c, {std::make_shared<LinearLR>(c, 0.5, 1.0, 2), std::make_shared<ExponentialLR>(c, 0.5)}, {2});
  SequentialLR sd2(d, {std::make_shared<LinearLR>(d, 0.5, 1.0, 2), std::make_shared<ExponentialLR>(d, 0.5)}, {2});
  for (int e = 0; e < 3; ++e) sc.step();
  sd2.load_state_dict(sc.state_dict());
  sc.step(), sd2.step();
  CHECK(sd2.get_last_lr() == sc.get_last_lr());
  CHECK(d.param_groups()[0].lr() == doctest::Approx(0.1 * 0.25));

  CHECK_THROWS_WITH_AS(sb.load_state_dict({{"last_epoch", scalar(1, DType::i64)}}), doctest::Contains("missing key 'base_lrs'"),
                       ValueError);
  CHECK_THROWS_WITH_AS(sb.load_state_dict({{"epoch", scalar(1, DType::i64)}}), doctest::Contains("unexpected key 'epoch'"), ValueError);
}

TEST_CASE("LRScheduler: bad arguments") {
  SGD opt(one_param(), {.lr = 0.1});
  CHECK_THROWS_WITH_AS(StepLR(opt, 0), doctest::Contains("StepLR: step_size must be >= 1, got 0"), ValueError);
  CHECK_THROWS_WITH_AS(CosineAnnealingLR(opt, 0), doctest::Contains("CosineAnnealingLR: T_max must be >= 1"), ValueError);
  CHECK_THROWS_WITH_AS(LinearLR(opt, 0.0), doctest::Contains("LinearLR: start_factor must be in (0, 1], got 0"), ValueError);
  CHECK_THROWS_WITH_AS(LinearLR(opt, 0.5, 1.5), doctest::Contains("LinearLR: end_factor must be in [0, 1], got 1.5"), ValueError);
  CHECK_THROWS_WITH_AS(OneCycleLR(opt, {.max_lr = {1.0}}), doctest::Contains("OneCycleLR: total_steps must be > 0"), ValueError);
  CHECK_THROWS_WITH_AS(OneCycleLR(opt, {.max_lr = {1.0, 2.0}, .total_steps = 5}), doctest::Contains("max_lr needs one value"),
                       ValueError);
  CHECK_THROWS_WITH_AS(OneCycleLR(opt, {.max_lr = {1.0}, .total_steps = 5, .pct_start = 1.5}), doctest::Contains("pct_start"),
                       ValueError);
  auto lin = std::make_shared<LinearLR>(opt);
  CHECK_THROWS_WITH_AS(SequentialLR(opt, {lin}, {3}), doctest::Contains("one milestone fewer than schedules"), ValueError);
  SGD other(one_param(), {.lr = 0.1});
  auto foreign = std::make_shared<StepLR>(other, 2);
  CHECK_THROWS_WITH_AS(SequentialLR(opt, {lin, foreign}, {3}), doctest::Contains("belongs to a different optimizer"), ValueError);
}
