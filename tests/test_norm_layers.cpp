// Tests of the normalization modules (layers/batch_norm, layer_norm, group_norm, rms_norm):
// PyTorch's buffers, modes, defaults, printing and errors, and module-level gradchecks.
#include <cmath>

#include "layers/batch_norm.h"
#include "layers/group_norm.h"
#include "layers/layer_norm.h"
#include "layers/rms_norm.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::nn;

namespace {
std::vector<std::string> keys(const NamedTensors& sd) {
  std::vector<std::string> k;
  for (auto& [n, t] : sd) k.push_back(n);
  return k;
}
// The three (N=2, C=2) batches of test_norm.cpp: channel 0 means 2, 6, 5, unbiased
// variances 2, 8, 0; channel 1 = channel 0 + 10.
std::vector<Tensor> three_batches() {
  return {tensor({1, 11, 3, 13}, {2, 2}, DType::f64), tensor({4, 14, 8, 18}, {2, 2}, DType::f64),
          tensor({5, 15, 5, 15}, {2, 2}, DType::f64)};
}
}  // namespace

TEST_CASE("BatchNorm2d: parameters, buffers, state_dict keys and repr as PyTorch") {
  BatchNorm2d bn(BatchNormOptions(32));
  CHECK(keys(bn.state_dict()) ==
        std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  test::check_values(bn.weight, std::vector<double>(32, 1.0));
  test::check_values(bn.bias, std::vector<double>(32, 0.0));
  test::check_values(bn.running_var, std::vector<double>(32, 1.0));
  CHECK(bn.num_batches_tracked.dtype() == DType::i64);
  CHECK(bn.num_batches_tracked.dim() == 0);
  CHECK(bn.repr() == "BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  BatchNorm1d bn1(BatchNormOptions(4).eps(1e-3).momentum(std::nullopt).affine(false).track_running_stats(false));
  CHECK(bn1.repr() == "BatchNorm1d(4, eps=0.001, momentum=None, affine=False, track_running_stats=False)");
  CHECK(bn1.state_dict().empty());
  CHECK(bn1.parameters().empty());
}

TEST_CASE("BatchNorm1d: running statistics over 3 training steps, then eval uses them") {
  SUBCASE("momentum 0.1") {
    BatchNorm1d bn(BatchNormOptions(2));
    bn.to(DType::f64);
    const std::vector<double> m0{0.2, 0.78, 1.202}, m1{1.2, 2.68, 3.912}, v{1.1, 1.79, 1.611};
    auto xs = three_batches();
    for (std::size_t t = 0; t < 3; ++t) {
      bn(xs[t]);
      test::check_values(bn.running_mean, {m0[t], m1[t]}, 1e-12);
      test::check_values(bn.running_var, {v[t], v[t]}, 1e-12);
      CHECK(bn.num_batches_tracked.item() == static_cast<double>(t + 1));
    }
    bn.eval();
    Tensor x = tensor({0, 1, 2, 3}, {2, 2}, DType::f64);
    const double r = 1 / std::sqrt(1.611 + 1e-5);
    // y = (x - running_mean) / sqrt(running_var + eps), per sample independent of the batch.
    test::check_values(bn(x), {(0 - 1.202) * r, (1 - 3.912) * r, (2 - 1.202) * r, (3 - 3.912) * r}, 1e-12);
    CHECK(bn.num_batches_tracked.item() == 3.0);  // eval does not count batches
    test::check_values(bn.running_mean, {1.202, 3.912}, 1e-12);
  }
  SUBCASE("momentum none: cumulative moving average") {
    BatchNorm1d bn(BatchNormOptions(2).momentum(std::nullopt));
    bn.to(DType::f64);
    const std::vector<double> m{2, 4, 13.0 / 3}, v{2, 5, 10.0 / 3};
    auto xs = three_batches();
    for (std::size_t t = 0; t < 3; ++t) {
      bn(xs[t]);
      test::check_values(bn.running_mean, {m[t], m[t] + 10}, 1e-12);
      test::check_values(bn.running_var, {v[t], v[t]}, 1e-12);
    }
    CHECK(bn.num_batches_tracked.item() == 3.0);
  }
}

TEST_CASE("BatchNorm2d: track_running_stats off uses batch statistics in train and eval") {
  BatchNorm2d bn(BatchNormOptions(3).track_running_stats(false));
  bn.to(DType::f64);
  Tensor x = test::rnd({2, 3, 5, 5}, 1, false);
  const Tensor expect = reference::batch_norm(x, {}, {});
  CHECK(bn.buffers().empty());
  test::check_values(bn(x), expect.to_vector(), 1e-10);
  bn.eval();
  test::check_values(bn(x), expect.to_vector(), 1e-10);
}

TEST_CASE("BatchNorm2d: module gradcheck in training and eval leaves the running statistics unchanged") {
  BatchNorm2d bn(BatchNormOptions(3));
  bn.to(DType::f64);
  {
    NoGradGuard ng;
    bn.running_mean.copy_(tensor({0.1, -0.2, 0.3}, {3}, DType::f64));
    bn.running_var.copy_(tensor({0.5, 1.5, 2.0}, {3}, DType::f64));
    bn.weight.copy_(tensor({1.5, -0.5, 2.0}, {3}, DType::f64));
  }
  const auto before = bn.state_dict();
  std::vector<std::vector<double>> snapshot;
  for (auto& [n, t] : before) snapshot.push_back(t.to_vector());
  Tensor x = test::rnd({2, 3, 5, 5}, 2);
  CHECK_GRADCHECK(gradcheck(bn, x));  // training: batch statistics, every forward would update
  bn.eval();
  CHECK_GRADCHECK(gradcheck(bn, x));
  const auto after = bn.state_dict();
  for (std::size_t i = 0; i < after.size(); ++i) {
    INFO(after[i].first);
    CHECK(after[i].second.to_vector() == snapshot[i]);  // bit-exact
  }
  CHECK(bn.num_batches_tracked.item() == 0.0);
}

TEST_CASE("BatchNorm1d: gradcheck on (N, C) and (N, C, L), train and eval, with and without affine") {
  for (bool affine : {true, false}) {
    BatchNorm1d bn(BatchNormOptions(3).affine(affine));
    bn.to(DType::f64);
    for (const Shape& s : {Shape{5, 3}, Shape{2, 3, 7}}) {
      INFO("shape ", s, " affine ", affine);
      bn.train();
      CHECK_GRADCHECK(gradcheck(bn, test::rnd(s, 3)));
      bn.eval();
      CHECK_GRADCHECK(gradcheck(bn, test::rnd(s, 4)));
    }
  }
}

TEST_CASE("BatchNorm: errors name the layer, the shape and the remedy") {
  BatchNorm2d bn(BatchNormOptions(3));
  CHECK_THROWS_WITH_AS(bn(randn({1, 3, 1, 1})),
                       doctest::Contains("BatchNorm2d: expected more than 1 value per channel when training: got input "
                                         "of shape [1, 3, 1, 1] (N*H*W = 1)"),
                       ValueError);
  CHECK_THROWS_WITH_AS(bn(randn({1, 3, 1, 1})), doctest::Contains("use eval()"), ValueError);
  CHECK_THROWS_WITH_AS(bn(randn({1, 3, 1, 1})), doctest::Contains("GroupNorm / LayerNorm"), ValueError);
  BatchNorm1d bn1(BatchNormOptions(3));
  CHECK_THROWS_WITH_AS(bn1(randn({1, 3})), doctest::Contains("BatchNorm1d: expected more than 1 value per channel"),
                       ValueError);
  CHECK_NOTHROW(bn1(randn({1, 3, 2})));  // N = 1 is fine: two values per channel
  bn.eval();
  CHECK_NOTHROW(bn(randn({1, 3, 1, 1})));  // eval uses running statistics
  CHECK_THROWS_WITH_AS(bn(randn({2, 4, 5, 5})),
                       doctest::Contains("BatchNorm2d: expected 3 channels (num_features) in dim 1 of input of shape "
                                         "[2, 4, 5, 5]: expected 3 vs actual 4"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(bn(randn({2, 3, 5})), doctest::Contains("BatchNorm2d: expected a 4-d (N, C, H, W) input: got shape [2, 3, 5]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(bn1(randn({2, 3, 5, 5})), doctest::Contains("BatchNorm1d: expected a 2-d (N, C) or 3-d (N, C, L) input"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(BatchNorm2d(BatchNormOptions(3).eps(-1e-3)),
                       doctest::Contains("BatchNorm2d: eps must be >= 0 (it is added to the variance under the square "
                                         "root): got -0.001"),
                       ValueError);
  CHECK_THROWS_WITH_AS(BatchNorm2d(BatchNormOptions(3).eps(std::nan(""))),
                       doctest::Contains("BatchNorm2d: eps is NaN; it must be a number >= 0 (default 1e-5)"), ValueError);
  CHECK_NOTHROW(BatchNorm2d(BatchNormOptions(3).eps(0)));
  CHECK_THROWS_WITH_AS(BatchNorm2d(BatchNormOptions(3).momentum(-0.1)),
                       doctest::Contains("BatchNorm2d: momentum must be in [0, 1]: got -0.1 (it weighs the new batch in "
                                         "running = (1 - momentum) * running + momentum * batch; outside [0, 1] the "
                                         "running statistics are no longer an average of batch statistics"),
                       ValueError);
  CHECK_THROWS_WITH_AS(BatchNorm1d(BatchNormOptions(0)), doctest::Contains("BatchNorm1d: num_features must be positive"),
                       ValueError);
}

TEST_CASE("LayerNorm: forward, gradcheck, options and repr") {
  LayerNorm ln(LayerNormOptions({4, 5}));
  CHECK(ln.repr() == "LayerNorm((4, 5), eps=1e-05, elementwise_affine=True)");
  CHECK(keys(ln.state_dict()) == std::vector<std::string>{"weight", "bias"});
  CHECK(ln.weight.shape() == Shape{4, 5});
  ln.to(DType::f64);
  {
    NoGradGuard ng;
    ln.weight.copy_(test::rnd({4, 5}, 5, false));
    ln.bias.copy_(test::rnd({4, 5}, 6, false));
  }
  Tensor x = test::rnd({3, 4, 5}, 7);
  test::check_values(ln(x), reference::layer_norm(x, {4, 5}, ln.weight, ln.bias).to_vector(), 1e-10);
  GradcheckOptions fast;
  fast.fast_mode_above = 30;
  CHECK_GRADCHECK(gradcheck(ln, x, fast));
  ln.eval();  // no running statistics: the same output
  test::check_values(ln(x), reference::layer_norm(x, {4, 5}, ln.weight, ln.bias).to_vector(), 1e-10);

  LayerNorm no_bias(LayerNormOptions({5}).bias(false).eps(1e-6));
  CHECK(keys(no_bias.state_dict()) == std::vector<std::string>{"weight"});
  CHECK(no_bias.repr() == "LayerNorm((5,), eps=1e-06, elementwise_affine=True)");
  no_bias.to(DType::f64);
  CHECK_GRADCHECK(gradcheck(no_bias, test::rnd({3, 5}, 8)));
  LayerNorm plain(LayerNormOptions({5}).elementwise_affine(false));
  CHECK(plain.parameters().empty());
  CHECK_GRADCHECK(gradcheck(plain, test::rnd({3, 5}, 9)));

  CHECK_THROWS_WITH_AS(ln(test::rnd({3, 5, 4}, 1, false)),
                       doctest::Contains("layer_norm: normalized_shape must equal the trailing dims of the input: "
                                         "expected [*, 4, 5] vs input [3, 5, 4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(LayerNorm(LayerNormOptions({5}).eps(-1)), doctest::Contains("LayerNorm: eps must be >= 0"), ValueError);
}

TEST_CASE("GroupNorm: forward, gradcheck, repr and errors") {
  GroupNorm gn(GroupNormOptions(3, 6));
  CHECK(gn.repr() == "GroupNorm(3, 6, eps=1e-05, affine=True)");
  gn.to(DType::f64);
  {
    NoGradGuard ng;
    gn.weight.copy_(test::rnd({6}, 10, false));
    gn.bias.copy_(test::rnd({6}, 11, false));
  }
  Tensor x = test::rnd({2, 6, 3, 3}, 12);
  test::check_values(gn(x), reference::group_norm(x, 3, gn.weight, gn.bias).to_vector(), 1e-10);
  GradcheckOptions fast;
  fast.fast_mode_above = 60;
  CHECK_GRADCHECK(gradcheck(gn, x, fast));
  CHECK_GRADCHECK(gradcheck(gn, test::rnd({2, 6}, 13)));  // (N, C) input: statistics over C/G channels
  // One sample works in training (unlike BatchNorm): statistics are per sample.
  CHECK_NOTHROW(gn(test::rnd({1, 6, 1, 1}, 14, false)));
  CHECK_THROWS_WITH_AS(GroupNorm(GroupNormOptions(4, 6)),
                       doctest::Contains("GroupNorm: num_channels must be divisible by num_groups: 6 channels vs 4 groups"),
                       ValueError);
  CHECK_THROWS_WITH_AS(gn(test::rnd({2, 5, 3}, 1, false)),
                       doctest::Contains("GroupNorm: expected 6 channels (num_channels) in dim 1 of input of shape [2, 5, "
                                         "3]: expected 6 vs actual 5"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(GroupNorm(GroupNormOptions(2, 6).eps(-1)), doctest::Contains("GroupNorm: eps must be >= 0"), ValueError);
}

TEST_CASE("InstanceNorm2d: PyTorch defaults, per-instance statistics, running statistics when tracked") {
  InstanceNorm2d in(InstanceNormOptions(3));
  CHECK(in.repr() == "InstanceNorm2d(3, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)");
  CHECK(in.state_dict().empty());
  Tensor x = test::rnd({2, 3, 5, 5}, 15);
  test::check_values(in(x), reference::group_norm(x, 3, {}, {}).to_vector(), 1e-10);
  CHECK_GRADCHECK(gradcheck(in, x));
  // Unbatched (C, H, W).
  Tensor xu = test::rnd({3, 4, 4}, 16, false);
  test::check_values(in(xu), reference::group_norm(xu.unsqueeze(0), 3, {}, {}).to_vector(), 1e-10);

  InstanceNorm2d tracked(InstanceNormOptions(1).affine(true).track_running_stats(true));
  tracked.to(DType::f64);
  CHECK(keys(tracked.state_dict()) ==
        std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  // Instances {1, 3} (mean 2, unbiased var 2) and {4, 8} (mean 6, var 8): batch averages 4 and 5.
  tracked(tensor({1, 3, 4, 8}, {2, 1, 1, 2}, DType::f64));
  test::check_values(tracked.running_mean, {0.4}, 1e-12);
  test::check_values(tracked.running_var, {0.9 + 0.5}, 1e-12);
  tracked.eval();
  const double r = 1 / std::sqrt(1.4 + 1e-5);
  test::check_values(tracked(tensor({0, 1}, {1, 1, 1, 2}, DType::f64)), {-0.4 * r, 0.6 * r}, 1e-12);
  CHECK_GRADCHECK(gradcheck(tracked, test::rnd({2, 1, 3, 3}, 17)));

  CHECK_THROWS_WITH_AS(in(test::rnd({2, 4, 3, 3}, 1, false)),
                       doctest::Contains("InstanceNorm2d: expected 3 channels (num_features) in dim 1"), ShapeError);
  CHECK_THROWS_WITH_AS(in(test::rnd({2, 3}, 1, false)), doctest::Contains("InstanceNorm2d: expected a 4-d"), ShapeError);
  CHECK_THROWS_WITH_AS(InstanceNorm2d(InstanceNormOptions(3).momentum(2)),
                       doctest::Contains("InstanceNorm2d: momentum must be in [0, 1]"), ValueError);
}

TEST_CASE("RMSNorm: default eps, forward, gradcheck, repr and errors") {
  RMSNorm rms(RMSNormOptions({5}));
  CHECK(rms.repr() == "RMSNorm((5,), eps=None, elementwise_affine=True)");
  CHECK(keys(rms.state_dict()) == std::vector<std::string>{"weight"});
  rms.to(DType::f64);
  Tensor x = test::rnd({3, 5}, 18);
  test::check_values(rms(x), reference::rms_norm(x, {5}, rms.weight, std::numeric_limits<double>::epsilon()).to_vector(),
                     1e-12);
  CHECK_GRADCHECK(gradcheck(rms, x));
  RMSNorm rms2(RMSNormOptions({2, 5}).eps(1e-6).elementwise_affine(false));
  CHECK(rms2.repr() == "RMSNorm((2, 5), eps=1e-06, elementwise_affine=False)");
  CHECK_GRADCHECK(gradcheck(rms2, test::rnd({3, 2, 5}, 19)));
  CHECK_THROWS_WITH_AS(rms(test::rnd({3, 4}, 1, false)),
                       doctest::Contains("rms_norm: normalized_shape must equal the trailing dims of the input: "
                                         "expected [*, 5] vs input [3, 4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(RMSNorm(RMSNormOptions({5}).eps(-1e-6)), doctest::Contains("RMSNorm: eps must be >= 0"), ValueError);
}

TEST_CASE("BatchNorm2d in a Sequential: train/eval and the tape") {
  auto net = std::make_shared<Sequential>(std::make_shared<BatchNorm2d>(BatchNormOptions(3)),
                                          std::make_shared<GroupNorm>(GroupNormOptions(1, 3)));
  CHECK(keys(net->state_dict()) == std::vector<std::string>{"0.weight", "0.bias", "0.running_mean", "0.running_var",
                                                            "0.num_batches_tracked", "1.weight", "1.bias"});
  Tensor x = randn({2, 3, 4, 4});
  Tensor y = (*net)(x);
  CHECK(tape_summary().find("batch_norm") != std::string::npos);
  CHECK(tape_summary().find("group_norm") != std::string::npos);
  sum(mul(y, y)).backward();
  CHECK(net->parameters()[0].grad().defined());
}
