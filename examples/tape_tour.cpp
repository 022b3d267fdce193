// How the tape records and replays: a worked example (see docs/autograd.md).
// Builds a tiny computation, prints the tape listing, writes the graph as Graphviz DOT
// with each tensor's value and gradient (rendered to SVG when Graphviz `dot` is installed), runs
// backward and prints the gradients.
#include <fmt/core.h>

#include <vector>

#include "autograd/graphviz.h"
#include "autograd/ops.h"

using namespace ng;

int main() {
  // y = sum(tanh(x W + b) * x W)   with x: [2, 3] data, W: [3, 2] and b: [2] parameters
  Tensor x = tensor({0.5, -1.0, 2.0, 1.5, 0.0, -0.5}, {2, 3}, DType::f64);
  Tensor W = tensor({0.1, 0.2, -0.3, 0.4, 0.5, -0.6}, {3, 2}, DType::f64).requires_grad_();
  Tensor b = tensor({0.01, -0.02}, {2}, DType::f64).requires_grad_();

  Tensor z = matmul(x, W);  // recorded: W requires grad
  Tensor a = tanh(z + b);   // add, tanh recorded
  Tensor y = sum(a * z);    // mul, sum recorded
  fmt::print("The tape after the forward pass (oldest first):\n{}\n", tape_summary());

  // The graph, drawn as micrograd's draw_dot does: each named tensor with its value and its
  // gradient d y / d tensor (ng::grad w.r.t. intermediate tensors; the tape is kept for backward).
  const std::vector<Tensor> g = grad({y}, {W, b, z, a}, {}, {.retain_graph = true});
  const std::vector<DotLabel> labels = {{"W", W, g[0]}, {"b", b, g[1]}, {"z = x W", z, g[2]},
                                        {"a = tanh(z + b)", a, g[3]}, {"y", y, ones({}, DType::f64)}};
  if (write_graph(to_dot_with_values(y, labels), "tape_tour"))
    fmt::print("Wrote tape_tour.dot and tape_tour.svg\n");
  else
    fmt::print("Wrote tape_tour.dot (install graphviz to render it: dot -Tsvg tape_tour.dot -o tape_tour.svg)\n");

  y.backward();  // walks the tape from the newest node to the oldest
  fmt::print("\ny = {:.6f}\ndy/dW =\n{}\ndy/db =\n{}\n", y.item(), W.grad(), b.grad());
  fmt::print("\nAfter backward the tape is released: {} live nodes\n", tape_size());
  return 0;
}
