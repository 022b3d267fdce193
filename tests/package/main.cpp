// Built against an installed (or build-tree) normgrad through find_package.
#include <autograd/ops.h>

int main() {
  ng::Tensor x = ng::tensor({1, 2, 3}, {3}, ng::DType::f64).requires_grad_();
  ng::Tensor y = ng::sum(ng::mul(x, x));
  y.backward();
  const auto g = x.grad().to_vector();  // d sum(x^2)/dx = 2x
  return (g[0] == 2 && g[1] == 4 && g[2] == 6) ? 0 : 1;
}
