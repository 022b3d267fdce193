// Anomaly mode (tape.h): find the first op whose output, or whose backward's gradient,
// holds a NaN or an Inf, and say where it is on the tape and where its inputs came from.
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "autograd/tape.h"

namespace ng::detail {
namespace {

struct NonFinite {
  std::int64_t index = -1;  // flat (row-major) index of the first bad element, -1 if none
  double value = 0;
};

template <class T>
NonFinite first_non_finite(const T* p, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return {i, static_cast<double>(p[i])};
  return {};
}

NonFinite scan(const Tensor& t) {
  if (t.dtype() == DType::i64 || t.numel() == 0) return {};  // integers are always finite
  // A strided view is copied once (anomaly mode is for debugging; speed is secondary).
  const Tensor c = t.is_contiguous() ? t : t.detach().contiguous();
  if (c.dtype() == DType::f32) return first_non_finite(c.data<float>(), c.numel());
  return first_non_finite(c.data<double>(), c.numel());
}

std::string describe(double v) { return std::isnan(v) ? "NaN" : (v > 0 ? "inf" : "-inf"); }

// "input 0: output of #2 'mul'; input 1: a leaf that requires grad; ..."
std::string describe_inputs(const Node& node) {
  std::string s;
  for (std::size_t i = 0; i < node.next.size(); ++i) {
    const Edge& e = node.next[i];
    s += i ? "; " : "";
    if (e.node) s += fmt::format("input {} {}: output of #{} '{}'", i, node.input_shapes[i], e.node->seq, e.node->op);
    else if (e.leaf) s += fmt::format("input {} {}: a leaf that requires grad", i, node.input_shapes[i]);
    else s += fmt::format("input {} {}: a tensor that does not require grad", i, node.input_shapes[i]);
  }
  return s.empty() ? "none" : s;
}

}  // namespace

void check_forward_anomaly(const Node& node, const Tensor& out) {
  const NonFinite bad = scan(out);
  if (bad.index < 0) return;
  fail<AnomalyError>("anomaly: op '{}' (#{} on the tape) produced {} in its output of shape {} (first at flat "
                     "index {}); its inputs: {}",
                     node.op, node.seq, describe(bad.value), out.shape(), bad.index, describe_inputs(node));
}

void check_backward_anomaly(const Node& node, const Grads& grads) {
  for (std::size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) continue;
    const NonFinite bad = scan(grads[i]);
    if (bad.index < 0) continue;
    fail<AnomalyError>("anomaly: the backward of op '{}' (#{} on the tape) returned {} in the gradient for input {} "
                       "of shape {} (first at flat index {}); the op's inputs: {}",
                       node.op, node.seq, describe(bad.value), i, grads[i].shape(), bad.index, describe_inputs(node));
  }
}

}  // namespace ng::detail
