#include <doctest/doctest.h>
#include "autograd/ops.h"
using namespace ng;
TEST_CASE("smoke: add mul backward") {
  Tensor a = tensor({1, 2, 3}, {3}, DType::f64).requires_grad_();
  Tensor b = tensor({4}, {1}, DType::f64).requires_grad_();
  Tensor y = sum(mul(add(a, b), a));
  y.backward();
  CHECK(y.item() == doctest::Approx(5 + 12 + 21));
  auto ga = a.grad().to_vector();
  CHECK(ga[0] == doctest::Approx(2 * 1 + 4));
  CHECK(b.grad().item() == doctest::Approx(6));
  Tensor m = matmul(tensor({1, 2, 3, 4, 5, 6}, {2, 3}), tensor({1, 0, 0, 1, 1, 1}, {3, 2}));
  CHECK(m.to_vector() == std::vector<double>{4, 5, 10, 11});
  fmt::print("{}\n{}", m, tape_summary());
}
