// Tape visualization: the graph that produced a tensor, as Graphviz DOT text.
//   std::ofstream("graph.dot") << ng::to_dot(loss, names);   then:  dot -Tsvg graph.dot -o graph.svg
// Ops are boxes (name and output shape, in tape order); leaves that require grad are
// ellipses (green when named as parameters, e.g. from module.named_parameters()); the root
// is drawn bold. Edges point the way the forward pass ran.
//
// to_dot_with_values(root, labels) draws the graph as micrograd's draw_dot does: every labelled
// tensor (an op's output or a leaf) becomes a record { name | op and shape | value | grad }
// with a summary of its values and of its gradient (when given).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace ng {

using TensorNames = std::vector<std::pair<std::string, Tensor>>;

std::string to_dot(const Tensor& root, const TensorNames& names = {});

// A tensor of the graph to draw with its values: its name, the tensor, and its gradient
// (d loss / d tensor; undefined: not shown).
struct DotLabel {
  std::string name;
  Tensor tensor;
  Tensor grad;
};
std::string to_dot_with_values(const Tensor& root, const std::vector<DotLabel>& labels);

// A one-line summary of a tensor's values: the value itself for one element, else the first
// values (up to 4), mean and max |.|: "[4, 3] 0.12 -0.5 1.3 0.7 ... mean 0.05 max|.| 1.3".
std::string value_summary(const Tensor& t);

// Writes `dot` to stem.dot and, when Graphviz `dot` is on the PATH, renders it to stem.svg.
// Returns true if the SVG was written. Throws IOError if stem.dot cannot be written.
bool write_graph(const std::string& dot, const std::string& stem);

}  // namespace ng
