// The API harness's table of functional ops (see api_harness_internal.h): factories,
// elementwise, reductions, views and shape ops, linear algebra, losses, convolution and pooling,
// the normalization core against ng::reference, and the modes (grad, anomaly, backward).
#include <fmt/format.h>

#include "tests/fuzz/api_harness_internal.h"

namespace ng::fuzz {
namespace {

const Op kOps[] = {
    // ---- factories (shape checks, allocation limit)
    {"zeros", [](Ctx& c) { const Shape s = c.shape(); finish(c, "zeros", zeros(s, c.dtype()), {}); }},
    {"full", [](Ctx& c) { const Shape s = c.shape(); const double v = c.real(); finish(c, "full", full(s, v, c.dtype()), {}); }},
    {"randn", [](Ctx& c) { const Shape s = c.shape(); finish(c, "randn", randn(s, c.dtype(), &c.gen()), {}); }},
    {"randint", [](Ctx& c) { const Shape s = c.shape(); const std::int64_t lo = c.i(), hi = c.i(); finish(c, "randint", randint(s, lo, hi, &c.gen()), {}); }},
    {"arange", [](Ctx& c) { const double a = c.real() * 3, b = c.real() * 7, st = c.real(); finish(c, "arange", arange(a, b, st, c.dtype()), {}); }},
    {"from_vector", [](Ctx& c) { const std::vector<double> v(static_cast<std::size_t>(c.byte() % 9), 1.5); finish(c, "from_vector", from_vector(v, c.shape()), {}); }},
    {"make", [](Ctx& c) { finish(c, "make", c.make(), {}); }},
    // ---- elementwise
    {"add", [](Ctx& c) { binary(c, "add", [](const Tensor& a, const Tensor& b) { return add(a, b); }); }},
    {"sub", [](Ctx& c) { binary(c, "sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }); }},
    {"mul", [](Ctx& c) { binary(c, "mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }); }},
    {"div", [](Ctx& c) { binary(c, "div", [](const Tensor& a, const Tensor& b) { return div(a, b); }); }},
    {"pow_t", [](Ctx& c) { binary(c, "pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }); }},
    {"maximum", [](Ctx& c) { binary(c, "maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }); }},
    {"minimum", [](Ctx& c) { binary(c, "minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }); }},
    {"gt", [](Ctx& c) { binary(c, "gt", [](const Tensor& a, const Tensor& b) { return gt(a, b); }); }},
    {"eq", [](Ctx& c) { binary(c, "eq", [](const Tensor& a, const Tensor& b) { return eq(a, b); }); }},
    {"where", [](Ctx& c) { const Tensor k = c.x(); binary(c, "where", [k](const Tensor& a, const Tensor& b) { return where(k, a, b); }); }},
    {"add_scalar", [](Ctx& c) { const double s = c.real(); unary(c, "add_scalar", [s](const Tensor& a) { return add(a, s); }); }},
    {"mul_scalar", [](Ctx& c) { const double s = c.real(); unary(c, "mul_scalar", [s](const Tensor& a) { return mul(a, s); }); }},
    {"rdiv", [](Ctx& c) { const double s = c.real(); unary(c, "rdiv", [s](const Tensor& a) { return rdiv(s, a); }); }},
    {"pow", [](Ctx& c) { const double p = c.real(); unary(c, "pow", [p](const Tensor& a) { return pow(a, p); }); }},
    {"neg", [](Ctx& c) { unary(c, "neg", [](const Tensor& a) { return neg(a); }); }},
    {"exp", [](Ctx& c) { unary(c, "exp", [](const Tensor& a) { return exp(a); }); }},
    {"log", [](Ctx& c) { unary(c, "log", [](const Tensor& a) { return log(a); }); }},
    {"sqrt", [](Ctx& c) { unary(c, "sqrt", [](const Tensor& a) { return sqrt(a); }); }},
    {"rsqrt", [](Ctx& c) { unary(c, "rsqrt", [](const Tensor& a) { return rsqrt(a); }); }},
    {"abs", [](Ctx& c) { unary(c, "abs", [](const Tensor& a) { return abs(a); }); }},
    {"clamp", [](Ctx& c) { const double lo = c.real(), hi = c.real(); const bool l = c.flag(), h = c.flag(); unary(c, "clamp", [=](const Tensor& a) { return clamp(a, l ? std::optional(lo) : std::nullopt, h ? std::optional(hi) : std::nullopt); }); }},
    {"relu", [](Ctx& c) { unary(c, "relu", [](const Tensor& a) { return relu(a); }); }},
    {"leaky_relu", [](Ctx& c) { const double s = c.real(); unary(c, "leaky_relu", [s](const Tensor& a) { return leaky_relu(a, s); }); }},
    {"sigmoid", [](Ctx& c) { unary(c, "sigmoid", [](const Tensor& a) { return sigmoid(a); }); }},
    {"tanh", [](Ctx& c) { unary(c, "tanh", [](const Tensor& a) { return tanh(a); }); }},
    {"gelu", [](Ctx& c) { unary(c, "gelu", [](const Tensor& a) { return gelu(a); }); }},
    {"softplus", [](Ctx& c) { const double b = c.real(), t = c.real(); unary(c, "softplus", [b, t](const Tensor& a) { return softplus(a, b, t); }); }},
    {"cast", [](Ctx& c) { const DType d = c.dtype(); unary(c, "cast", [d](const Tensor& a) { return a.to(d); }); }},
    // ---- reductions
    {"sum", [](Ctx& c) { reduction(c, "sum", [](const Tensor& a, const Axes& ax, bool k) { return sum(a, ax, k); }); }},
    {"mean", [](Ctx& c) { reduction(c, "mean", [](const Tensor& a, const Axes& ax, bool k) { return mean(a, ax, k); }); }},
    {"var", [](Ctx& c) { const std::int64_t corr = c.i(); reduction(c, "var", [corr](const Tensor& a, const Axes& ax, bool k) { return var(a, ax, corr, k); }); }},
    {"std", [](Ctx& c) { reduction(c, "std", [](const Tensor& a, const Axes& ax, bool k) { return ng::std(a, ax, 1, k); }); }},
    {"max", [](Ctx& c) { reduction(c, "max", [](const Tensor& a, const Axes& ax, bool k) { return max(a, ax, k); }); }},
    {"min", [](Ctx& c) { reduction(c, "min", [](const Tensor& a, const Axes& ax, bool k) { return min(a, ax, k); }); }},
    {"logsumexp", [](Ctx& c) { reduction(c, "logsumexp", [](const Tensor& a, const Axes& ax, bool k) { return logsumexp(a, ax, k); }); }},
    {"argmax", [](Ctx& c) { const std::int64_t ax = c.i(); unary(c, "argmax", [ax](const Tensor& a) { return argmax(a, ax, false); }); }},
    {"sum_to", [](Ctx& c) { const Shape s = c.shape(); unary(c, "sum_to", [s](const Tensor& a) { return sum_to(a, s); }); }},
    {"mean_ref", [](Ctx& c) { const Tensor a = c.xf(); with_reference(c, "mean", mean(a), {a}, [a] { return mul(sum(a), 1.0 / static_cast<double>(std::max<std::int64_t>(a.numel(), 1))); }, "sum / n"); }},
    {"var_ref", [](Ctx& c) { const Tensor a = c.xf(); with_reference(c, "var", var(a, {}, 0), {a}, [a] { return mean(pow(sub(a, mean(a)), 2.0)); }, "mean((x - mean)^2)"); }},
    // ---- views and shape ops (any size: they copy nothing unless they must)
    {"reshape", [](Ctx& c) { const Shape s = c.shape(); view_op(c, "reshape", [s](const Tensor& a) { return reshape(a, s); }); }},
    {"view", [](Ctx& c) { const Shape s = c.shape(); view_op(c, "view", [s](const Tensor& a) { return view(a.is_contiguous() ? a : a.contiguous(), s); }); }},
    {"flatten", [](Ctx& c) { const std::int64_t s = c.i(), e = c.i(); view_op(c, "flatten", [s, e](const Tensor& a) { return flatten(a, s, e); }); }},
    {"squeeze", [](Ctx& c) { const std::int64_t d = c.i(); view_op(c, "squeeze", [d](const Tensor& a) { return squeeze(a, d); }); }},
    {"unsqueeze", [](Ctx& c) { const std::int64_t d = c.i(); view_op(c, "unsqueeze", [d](const Tensor& a) { return unsqueeze(a, d); }); }},
    {"transpose", [](Ctx& c) { const std::int64_t d0 = c.i(), d1 = c.i(); view_op(c, "transpose", [d0, d1](const Tensor& a) { return transpose(a, d0, d1); }); }},
    {"permute", [](Ctx& c) { std::vector<std::int64_t> o; for (int k = c.byte() % 5; k > 0; --k) o.push_back(c.i()); view_op(c, "permute", [o](const Tensor& a) { return permute(a, o); }); }},
    {"expand", [](Ctx& c) { const Shape s = c.shape(); view_op(c, "expand", [s](const Tensor& a) { return expand(a, s); }); }},
    {"slice", [](Ctx& c) { const std::int64_t d = c.i(), s = c.i(), e = c.i(), st = c.i(); view_op(c, "slice", [=](const Tensor& a) { return slice(a, d, s, e, st); }); }},
    {"select", [](Ctx& c) { const std::int64_t d = c.i(), k = c.i(); view_op(c, "select", [d, k](const Tensor& a) { return select(a, d, k); }); }},
    {"contiguous", [](Ctx& c) { view_op(c, "contiguous", [](const Tensor& a) { return a.contiguous(); }); }},
    {"clone", [](Ctx& c) { unary(c, "clone", [](const Tensor& a) { return a.clone(); }); }},
    {"cat", [](Ctx& c) { const Tensor a = c.x(), b = c.x(); const std::int64_t d = c.i(); finish(c, "cat", cat({a, b}, d), {a, b}); }},
    {"cat_views", [](Ctx& c) { const Tensor a = c.any(), b = c.any(); const std::int64_t d = c.i(); finish(c, "cat", cat({a, b}, d), {a, b}); }},
    {"stack", [](Ctx& c) { const Tensor a = c.x(), b = c.x(); const std::int64_t d = c.i(); finish(c, "stack", stack({a, b}, d), {a, b}); }},
    {"split", [](Ctx& c) { const Tensor a = c.any(); const std::int64_t s = c.i(), d = c.i(); for (const Tensor& p : split(a, s, d)) check_tensor(p, "split"); }},
    {"split_sizes", [](Ctx& c) { const Tensor a = c.any(); const std::vector<std::int64_t> s{c.i(), c.i()}; const std::int64_t d = c.i(); for (const Tensor& p : split(a, s, d)) check_tensor(p, "split"); }},
    {"chunk", [](Ctx& c) { const Tensor a = c.any(); const std::int64_t n = c.i(), d = c.i(); for (const Tensor& p : chunk(a, n, d)) check_tensor(p, "chunk"); }},
    {"pad", [](Ctx& c) { std::vector<std::int64_t> w; for (int k = c.byte() % 8; k > 0; --k) w.push_back(c.i()); const double v = c.real(); unary(c, "pad", [w, v](const Tensor& a) { return pad(a, w, PadMode::constant, v); }); }},
    {"index_select", [](Ctx& c) { const Tensor a = c.x(); const std::int64_t d = c.i(); const Shape ks{c.size()}; const Tensor k = c.index(ks, a.dim() ? a.size(std::clamp<std::int64_t>(d, -a.dim(), a.dim() - 1)) : 1); finish(c, "index_select", index_select(a, d, k), {a}); }},
    {"gather", [](Ctx& c) { const Tensor a = c.x(); const std::int64_t d = c.i(); const Tensor k = c.index(a.shape(), a.dim() ? a.size(std::clamp<std::int64_t>(d, -a.dim(), a.dim() - 1)) : 1); finish(c, "gather", gather(a, d, k), {a}); }},
    {"index_add", [](Ctx& c) { const Tensor s = c.x(); const Shape sh = c.shape(); const Tensor k = c.index(Shape{s.dim() ? s.size(0) : 0}, sh.ndim() ? sh[0] : 1); finish(c, "index_add", index_add(sh, 0, k, s), {s}); }},
    {"scatter_add", [](Ctx& c) { const Tensor s = c.x(); const Shape sh = c.shape(); const Tensor k = c.index(s.shape(), sh.ndim() ? sh[0] : 1); finish(c, "scatter_add", scatter_add(sh, 0, k, s), {s}); }},
    {"slice_backward", [](Ctx& c) { const Tensor s = c.x(); const Shape sh = c.shape(); const std::int64_t d = c.i(), a = c.i(), e = c.i(), st = c.i(); finish(c, "slice_backward", slice_backward(s, sh, d, a, e, st), {s}); }},
    // ---- linear algebra
    {"matmul", [](Ctx& c) { binary(c, "matmul", [](const Tensor& a, const Tensor& b) { return matmul(a, b); }); }},
    {"matmul_ref", [](Ctx& c) { const Tensor a = c.xf(), b = c.xf(); with_reference(c, "matmul", matmul(a, b), {a, b}, [a, b] { return a.dim() == 2 && b.dim() == 2 ? sum(mul(unsqueeze(a, -1), unsqueeze(b, 0)), {1}) : matmul(contig(a), contig(b)); }, "sum(a[:, :, None] * b[None], 1)"); }},
    {"linear", [](Ctx& c) { const Tensor x = c.xf(), w = c.xf(), b = c.flag() ? c.xf() : Tensor(); with_reference(c, "linear", linear(x, w, b), {x, w, b}, [x, w, b] { const Tensor y = matmul(x, transpose(w, 0, 1)); return b.defined() ? add(y, b) : y; }, "x W^T + b"); }},
    // ---- losses
    {"softmax", [](Ctx& c) { const Tensor a = c.xf(); const std::int64_t d = c.i(); with_reference(c, "softmax", softmax(a, d), {a}, [a, d] { return exp(sub(a, logsumexp(a, {d}, true))); }, "exp(x - logsumexp(x))"); }},
    {"log_softmax", [](Ctx& c) { const Tensor a = c.xf(); const std::int64_t d = c.i(); with_reference(c, "log_softmax", log_softmax(a, d), {a}, [a, d] { return sub(a, logsumexp(a, {d}, true)); }, "x - logsumexp(x)"); }},
    {"cross_entropy", [](Ctx& c) { const Tensor a = c.xf(); const Tensor t = c.index(a.dim() >= 1 ? Shape{a.size(0)} : Shape{}, a.dim() >= 2 ? a.size(1) : 1); const auto r = static_cast<Reduction>(c.byte() % 3); const double ls = c.real(); finish(c, "cross_entropy", cross_entropy(a, t, r, ls), {a}); }},
    {"nll_loss", [](Ctx& c) { const Tensor a = c.xf(); const Tensor t = c.index(a.dim() >= 1 ? Shape{a.size(0)} : Shape{}, a.dim() >= 2 ? a.size(1) : 1); finish(c, "nll_loss", nll_loss(a, t, static_cast<Reduction>(c.byte() % 3)), {a}); }},
    {"mse_loss", [](Ctx& c) { const Tensor a = c.x(), b = c.x(); finish(c, "mse_loss", mse_loss(a, b, static_cast<Reduction>(c.byte() % 3)), {a, b}); }},
    {"bce_logits", [](Ctx& c) { const Tensor a = c.x(), b = c.x(); finish(c, "binary_cross_entropy_with_logits", binary_cross_entropy_with_logits(a, b, static_cast<Reduction>(c.byte() % 3)), {a, b}); }},
    // ---- convolution and pooling
    {"conv2d", [](Ctx& c) { const Tensor x = c.xf(), w = c.xf(), b = c.flag() ? c.xf() : Tensor(); const Size2 s{c.i(), c.i()}, p{c.i(), c.i()}, d{c.i(), c.i()}; finish(c, "conv2d", conv2d(x, w, b, s, p, d, c.i()), {x, w, b}); }},
    {"max_pool2d", [](Ctx& c) { const Size2 k{c.i(), c.i()}, p{c.i(), c.i()}, d{c.i(), c.i()}; const std::optional<Size2> s = c.flag() ? std::optional(Size2{c.i(), c.i()}) : std::nullopt; const bool cm = c.flag(); unary(c, "max_pool2d", [=](const Tensor& x) { return max_pool2d(x, k, s, p, d, cm); }); }},
    {"avg_pool2d", [](Ctx& c) { const Size2 k{c.i(), c.i()}, p{c.i(), c.i()}; const std::optional<Size2> s = c.flag() ? std::optional(Size2{c.i(), c.i()}) : std::nullopt; const bool cm = c.flag(), inc = c.flag(); unary(c, "avg_pool2d", [=](const Tensor& x) { return avg_pool2d(x, k, s, p, cm, inc); }); }},
    {"adaptive_avg_pool2d", [](Ctx& c) { const Size2 o{c.i(), c.i()}; unary(c, "adaptive_avg_pool2d", [o](const Tensor& x) { return adaptive_avg_pool2d(x, o); }); }},
    // ---- normalization: the fused core against ng::reference
    {"layer_norm", [](Ctx& c) { const Tensor x = c.xf(); const Shape ns = trailing(x, c.byte() % 3); const Tensor w = param_like(c, ns.numel(), x.dtype()), b = param_like(c, ns.numel(), x.dtype()); const double eps = c.real(); with_reference(c, "layer_norm", layer_norm(x, ns, w.defined() ? w.reshape(ns) : w, b.defined() ? b.reshape(ns) : b, eps), {x, w, b}, [=] { return reference::layer_norm(x, ns, w.defined() ? w.reshape(ns) : w, b.defined() ? b.reshape(ns) : b, eps); }, "reference::layer_norm"); }},
    {"rms_norm", [](Ctx& c) { const Tensor x = c.xf(); const Shape ns = trailing(x, c.byte() % 3); const Tensor w = param_like(c, ns.numel(), x.dtype()); const double eps = c.real(); with_reference(c, "rms_norm", rms_norm(x, ns, w.defined() ? w.reshape(ns) : w, eps), {x, w}, [=] { return reference::rms_norm(x, ns, w.defined() ? w.reshape(ns) : w, eps); }, "reference::rms_norm"); }},
    {"group_norm", [](Ctx& c) { const Tensor x = c.xf(); const std::int64_t g = c.i(), ch = x.dim() >= 2 ? x.size(1) : 0; const Tensor w = param_like(c, ch, x.dtype()), b = param_like(c, ch, x.dtype()); const double eps = c.real(); with_reference(c, "group_norm", group_norm(x, g, w, b, eps), {x, w, b}, [=] { return reference::group_norm(x, g, w, b, eps); }, "reference::group_norm"); }},
    {"batch_norm_train", [](Ctx& c) { const Tensor x = c.xf(); const std::int64_t ch = x.dim() >= 2 ? x.size(1) : 0; const Tensor w = param_like(c, ch, x.dtype()), b = param_like(c, ch, x.dtype()); const double eps = c.real(); Tensor rm = c.flag() ? zeros(Shape{ch}, x.dtype()) : Tensor(), rv = rm.defined() ? ones(Shape{ch}, x.dtype()) : Tensor(); with_reference(c, "batch_norm", batch_norm(x, rm, rv, w, b, true, c.real(), eps), {x, w, b}, [=] { return reference::batch_norm(x, w, b, eps); }, "reference::batch_norm"); }},
    {"batch_norm_eval", [](Ctx& c) { const Tensor x = c.xf(); const std::int64_t ch = x.dim() >= 2 ? x.size(1) : 0; const Tensor m = param_like(c, ch, x.dtype()), v = param_like(c, ch, x.dtype()); const Tensor vv = v.defined() ? abs(v.detach()) : v; const double eps = c.real(); with_reference(c, "batch_norm", batch_norm(x, m.defined() ? m.detach() : m, vv, {}, {}, false, 0.1, eps), {x}, [=] { return reference::batch_norm_eval(x, m.detach(), vv, {}, {}, eps); }, "reference::batch_norm_eval"); }},
    {"instance_norm", [](Ctx& c) { const Tensor x = c.xf(); const double eps = c.real(); finish(c, "instance_norm", instance_norm(x, {}, {}, {}, {}, true, 0.1, eps), {x}); }},
    // ---- modes
    {"grad_mode", [](Ctx& c) { set_grad_enabled(c.flag()); }},
    {"anomaly_mode", [](Ctx& c) { set_detect_anomaly(c.flag()); }},
    // create_graph = false: backward(create_graph) stores in .grad a gradient whose graph holds the
    // leaf itself, a reference cycle (as in PyTorch, which warns about it) that leak detection reports
    {"backward", [](Ctx& c) { const Tensor a = c.x(); if (a.requires_grad() && a.numel() == 1) { const bool retain = c.flag(); a.backward({}, retain, false); } else if (a.requires_grad()) { const bool retain = c.flag(); a.backward(ones_like(a), retain, false); } }},
};

}  // namespace

std::span<const Op> op_table() { return kOps; }

}  // namespace ng::fuzz
