// Tape visualization: the graph that produced a tensor, as Graphviz DOT text.
//   std::ofstream("graph.dot") << ng::to_dot(loss, names);   then:  dot -Tsvg graph.dot -o graph.svg
// Ops are boxes (name and output shape, in tape order); leaves that require grad are
// ellipses (green when named as parameters, e.g. from module.named_parameters()); the root
// is drawn bold. Edges point the way the forward pass ran.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace ng {

using TensorNames = std::vector<std::pair<std::string, Tensor>>;

std::string to_dot(const Tensor& root, const TensorNames& names = {});

}  // namespace ng
