// Anomaly mode (autograd/tape.h): the first NaN / Inf in a recorded op's output or in a
// backward's gradient throws AnomalyError naming the op, its tape position and its inputs.
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <thread>

#include "tests/helpers.h"

using namespace ng;

namespace {

Tensor leaf(std::initializer_list<double> v, DType d = DType::f64) {
  return tensor(v, {static_cast<std::int64_t>(v.size())}, d).requires_grad_();
}

std::string anomaly_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const AnomalyError& e) {
    return e.what();
  }
  return "(no AnomalyError)";
}

}  // namespace

TEST_CASE("anomaly: off by default, NaN and Inf flow through silently") {
  CHECK_FALSE(detect_anomaly_enabled());
  Tensor x = leaf({1.0, 0.0, 4.0});
  Tensor y = log(x);  // -inf at index 1, no error
  CHECK(std::isinf(y.to_vector()[1]));
  Tensor s = sum(sqrt(x));
  CHECK_NOTHROW(s.backward());  // d sqrt/dx at 0 is inf, stored in .grad()
  CHECK(std::isinf(x.grad().to_vector()[1]));
}

TEST_CASE("anomaly: AnomalyModeGuard and set_detect_anomaly are scoped and thread-local") {
  {
    AnomalyModeGuard on;
    CHECK(detect_anomaly_enabled());
    {
      AnomalyModeGuard off(false);
      CHECK_FALSE(detect_anomaly_enabled());
    }
    CHECK(detect_anomaly_enabled());
    bool other = true;
    std::thread t([&] { other = detect_anomaly_enabled(); });
    t.join();
    CHECK_FALSE(other);  // another thread keeps its own flag (off)
  }
  CHECK_FALSE(detect_anomaly_enabled());
  set_detect_anomaly(true);
  CHECK(detect_anomaly_enabled());
  set_detect_anomaly(false);
  CHECK_FALSE(detect_anomaly_enabled());
}

TEST_CASE("anomaly: forward -inf names the op, its tape position and the op that made its input") {
  AnomalyModeGuard on;
  Tensor x = leaf({1.0, 0.0, 4.0});
  Tensor y = mul(x, 2.0);
  const auto mul_seq = y.grad_fn()->seq;
  const std::string mul_op = y.grad_fn()->op;  // the op name mul(Tensor, double) records
  const std::string msg = anomaly_message([&] { (void)log(y); });
  CHECK(msg.find("op 'log'") != std::string::npos);
  CHECK(msg.find(fmt::format("(#{} on the tape)", mul_seq + 1)) != std::string::npos);
  CHECK(msg.find("-inf") != std::string::npos);
  CHECK(msg.find("first at flat index 1") != std::string::npos);
  CHECK_MESSAGE(msg.find(fmt::format("input 0 [3]: output of #{} '{}'", mul_seq, mul_op)) != std::string::npos, msg);
  CHECK_THROWS_WITH_AS((void)log(y), doctest::Contains("anomaly: op 'log'"), AnomalyError);
}

TEST_CASE("anomaly: forward NaN in float32, inputs that are leaves and data") {
  AnomalyModeGuard on;
  Tensor a = leaf({1.0, -1.0}, DType::f32);
  const std::string msg = anomaly_message([&] { (void)sqrt(a); });
  CHECK(msg.find("op 'sqrt'") != std::string::npos);
  CHECK(msg.find("NaN") != std::string::npos);
  CHECK(msg.find("input 0 [2]: a leaf that requires grad") != std::string::npos);
  // inf * 0 = NaN with the second operand a plain data tensor
  Tensor w = leaf({std::numeric_limits<double>::infinity(), 1.0});  // an Inf leaf itself is not checked
  Tensor zero = zeros({2}, DType::f64);
  const std::string m2 = anomaly_message([&] { (void)mul(w, zero); });
  CHECK(m2.find("op 'mul'") != std::string::npos);
  CHECK(m2.find("input 1 [2]: a tensor that does not require grad") != std::string::npos);
}

TEST_CASE("anomaly: ops that are not recorded are not checked") {
  AnomalyModeGuard on;
  Tensor data = tensor({0.0, 1.0}, {2}, DType::f64);  // no requires_grad: log is not recorded
  CHECK_NOTHROW((void)log(data));
  Tensor x = leaf({0.0});
  NoGradGuard ng;
  CHECK_NOTHROW((void)log(x));
}

TEST_CASE("anomaly: backward Inf names the op whose backward produced it") {
  Tensor x = leaf({0.0, 1.0, 4.0});
  Tensor s;
  {
    AnomalyModeGuard off(false);
    s = sum(sqrt(x));  // the forward is finite: sqrt(0) = 0
  }
  const auto sqrt_seq = s.grad_fn()->seq - 1;
  AnomalyModeGuard on;
  const std::string msg = anomaly_message([&] { s.backward(); });
  CHECK(msg.find("the backward of op 'sqrt'") != std::string::npos);
  CHECK(msg.find(fmt::format("(#{} on the tape)", sqrt_seq)) != std::string::npos);
  CHECK(msg.find("returned inf in the gradient for input 0 of shape [3] (first at flat index 0)") !=
        std::string::npos);
  CHECK(msg.find("a leaf that requires grad") != std::string::npos);
  CHECK_FALSE(x.grad().defined());  // thrown before anything reached the leaf
}

TEST_CASE("anomaly: a finite training step passes, with the same result as without anomaly mode") {
  auto run = [](bool anomaly) {
    AnomalyModeGuard g(anomaly);
    Tensor x = test::rnd({5, 7}, 3, false);
    Tensor w = test::rnd({7, 3}, 4);
    Tensor b = test::rnd({3}, 5);
    Tensor y = layer_norm(tanh(add(matmul(x, w), b)), {3});
    Tensor loss = cross_entropy(y, tensor({0, 2, 1, 1, 0}, {5}, DType::i64));
    loss.backward();
    return w.grad().to_vector();
  };
  std::vector<double> with;
  CHECK_NOTHROW(with = run(true));
  CHECK(with == run(false));
}

TEST_CASE("anomaly: create_graph backward ops are checked as forward ops") {
  // d/dx sqrt(x) = 1/(2 sqrt x) is recorded under create_graph; at x = 0 it is inf.
  Tensor x = leaf({0.0, 1.0});
  Tensor y = sum(sqrt(x));
  AnomalyModeGuard on;
  CHECK_THROWS_AS(ng::grad({y}, {x}, {}, {.create_graph = true}), AnomalyError);
}
