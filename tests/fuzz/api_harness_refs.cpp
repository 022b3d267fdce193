// The API harness's table of ops checked against hand-made references (see
// api_harness_internal.h): scaled_dot_product_attention and attention_weights against the
// composite softmax(scale Q K^T + M) V of matmul and softmax; pad in its four modes against a
// loop over the output; cross_entropy / nll_loss with class weights, ignore_index, label
// smoothing and probability targets against a loop over the samples; the in-place updates
// (copy_, add_, mul_, fill_) through views against the out-of-place ops; the text helpers.
// Each reference is written from the documented formula, not from the library's code.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "io/text.h"
#include "tests/fuzz/api_harness_internal.h"

namespace ng::fuzz {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// A fresh tensor of shape s (values N(0, 1), sometimes requiring grad), or Skip when s is
// invalid or too large to compute on: the op sees well-formed shapes more often than c.x() gives.
Tensor fresh(Ctx& c, const Shape& s, DType d) {
  if (!shape_fits(s) || s.numel() > kMaxNumel) throw Skip{};
  Tensor t = randn(s, d, &c.gen());
  if (c.flag()) t.requires_grad_();
  return t;
}

// Row-major multi-index of flat position k in shape s.
std::vector<std::int64_t> unravel(std::int64_t k, const Shape& s) {
  std::vector<std::int64_t> idx(s.size());
  for (std::size_t d = s.size(); d-- > 0;) {
    idx[d] = k % s[d];
    k /= s[d];
  }
  return idx;
}

// ---- pad ------------------------------------------------------------------------------------

// out[o] = a[src(o)], dim by dim; along a padded dim with `before` and size n, i = o - before:
//   constant   i outside [0, n) -> the value
//   reflect    mirror with period 2(n - 1): j = |i| mod 2(n-1), then 2(n-1) - j if j >= n
//   replicate  clamp(i, 0, n - 1)
//   circular   i mod n (non-negative)
Tensor pad_reference(const Tensor& a, const std::vector<std::int64_t>& w, PadMode mode, double value) {
  const int nd = a.dim();
  const int pairs = static_cast<int>(w.size() / 2);
  Shape os = a.shape();
  std::vector<std::int64_t> before(static_cast<std::size_t>(nd), 0);
  for (int k = 0; k < pairs; ++k) {
    const auto d = static_cast<std::size_t>(nd - 1 - k);
    before[d] = w[static_cast<std::size_t>(2 * k)];
    os[d] += w[static_cast<std::size_t>(2 * k)] + w[static_cast<std::size_t>(2 * k + 1)];
  }
  const std::vector<double> in = a.to_vector();
  std::vector<double> out(static_cast<std::size_t>(os.numel()));
  for (std::int64_t o = 0; o < os.numel(); ++o) {
    const std::vector<std::int64_t> oi = unravel(o, os);
    std::int64_t src = 0;
    bool outside = false;
    for (std::size_t d = 0; d < oi.size(); ++d) {
      const std::int64_t n = a.shape()[d];
      std::int64_t i = oi[d] - before[d];
      if (i < 0 || i >= n) {
        if (mode == PadMode::constant) {
          outside = true;
        } else if (mode == PadMode::replicate) {
          i = std::clamp<std::int64_t>(i, 0, n - 1);
        } else if (mode == PadMode::circular) {
          i = ((i % n) + n) % n;
        } else {
          const std::int64_t period = 2 * (n - 1);
          i = period == 0 ? 0 : std::abs(i) % period;
          if (i >= n) i = period - i;
        }
      }
      src = src * n + i;
    }
    out[static_cast<std::size_t>(o)] = outside ? value : in[static_cast<std::size_t>(src)];
  }
  return from_vector(out, os, a.dtype());
}

void pad_op(Ctx& c) {
  std::vector<std::int64_t> w;
  for (int k = c.byte() % 8; k > 0; --k) w.push_back(c.i());  // an odd count is an error
  const auto mode = static_cast<PadMode>(c.byte() % 4);
  const std::optional<double> value = c.flag() ? std::optional(c.real()) : std::nullopt;
  const Tensor a = c.x();
  if (std::getenv("NG_FUZZ_TRACE"))
    std::fprintf(stderr, "api_fuzz:   pad %s by [%s] (%s)\n", fmt::format("{}", a.shape()).c_str(),
                 fmt::format("{}", fmt::join(w, ", ")).c_str(), to_string(mode));
  const Tensor r = pad(a, w, mode, value);
  if (r.numel() <= 16 * kMaxNumel) {
    NoGradGuard no_grad;
    check_agree(r.detach(), pad_reference(a.detach(), w, mode, value.value_or(0.0)), 0, 0, "pad",
                "a loop over the output");
  }
  finish(c, "pad", r, {a});
}

// ---- attention ----------------------------------------------------------------------------

// Shapes of query (B.., L, E), key (B.., S, E), value (B.., S, Ev) from decoded sizes, or any
// tensors (often mismatched).
struct Qkv {
  Tensor q, k, v, mask;
  bool is_causal = false;
  std::optional<double> scale;
  int mask_kind = 0;  // 0 none, 1 int64 (nonzero = may attend), 2 float added, 3 float 0 / -inf
};

Qkv decode_qkv(Ctx& c) {
  Qkv a;
  const std::uint8_t how = c.byte();
  if (how % 4 == 0) {
    a.q = c.xf(), a.k = c.xf(), a.v = c.xf();
  } else {
    Shape batch;
    for (int b = how % 3; b > 0; --b) batch.push_back(c.size());
    const std::int64_t L = c.size(), S = c.size(), E = c.size(), Ev = c.size();
    const DType d = c.byte() % 4 == 0 ? DType::f64 : DType::f32;
    Shape qs = batch, ks = batch, vs = batch;
    qs.push_back(L), qs.push_back(E), ks.push_back(S), ks.push_back(E), vs.push_back(S), vs.push_back(Ev);
    if (c.flag() && ks.ndim() > 2) ks[0] = 1;  // a broadcast batch dim
    a.q = fresh(c, qs, d), a.k = fresh(c, ks, d), a.v = fresh(c, vs, d);
  }
  a.mask_kind = c.byte() % 4;
  if (a.mask_kind != 0) {
    Shape ms{a.q.dim() >= 2 ? a.q.size(-2) : 1, a.k.dim() >= 2 ? a.k.size(-2) : 1};
    if (c.flag()) ms = c.shape(3);  // any shape: broadcast or mismatch
    if (a.mask_kind == 2) {
      a.mask = fresh(c, ms, a.q.dtype());
    } else {
      const Tensor allowed = c.index(ms, 1);  // values 0 and 1 (sometimes -1, 2)
      a.mask = a.mask_kind == 1 ? allowed : where(allowed, zeros(ms, a.q.dtype()), full(ms, -kInf, a.q.dtype()));
    }
  }
  a.is_causal = c.byte() % 4 == 0;
  if (c.byte() % 4 == 0) a.scale = c.real();
  return a;
}

// P = softmax((scale Q) K^T + M) along the keys, with M: the float mask, or -inf where the int64
// mask is 0 or (causal) where key j > query i; a row with no key left is 0 (the documented rule).
Tensor attention_weights_reference(const Qkv& a) {
  const std::int64_t E = a.q.size(-1), L = a.q.size(-2), S = a.k.size(-2);
  const double scale = a.scale.value_or(1.0 / std::sqrt(static_cast<double>(E)));
  // (scale Q) K^T: with E = 0 the default scale is inf and Q K^T is 0; scaling the empty Q first
  // gives scores 0 (uniform weights), as PyTorch, instead of inf * 0 = NaN
  Tensor scores = matmul(mul(a.q, scale), transpose(a.k, -2, -1));
  if (a.mask_kind == 1) {
    std::vector<double> m = a.mask.to_vector();
    for (double& x : m) x = x != 0 ? 0.0 : -kInf;
    scores = add(scores, from_vector(m, a.mask.shape(), scores.dtype()));
  } else if (a.mask.defined()) {
    scores = add(scores, a.mask);
  }
  if (a.is_causal) {
    std::vector<double> m(static_cast<std::size_t>(L * S));
    for (std::int64_t i = 0; i < L; ++i)
      for (std::int64_t j = 0; j < S; ++j) m[static_cast<std::size_t>(i * S + j)] = j > i ? -kInf : 0.0;
    scores = add(scores, from_vector(m, Shape{L, S}, scores.dtype()));
  }
  const std::vector<double> sv = scores.to_vector();
  std::vector<double> p = softmax(scores, -1).to_vector();  // a fully masked row is 0/0 = NaN
  for (std::size_t row = 0; S > 0 && row < p.size(); row += static_cast<std::size_t>(S)) {
    bool masked = true;
    for (std::size_t j = row; j < row + static_cast<std::size_t>(S); ++j) masked = masked && sv[j] == -kInf;
    if (masked)
      std::fill(p.begin() + static_cast<std::ptrdiff_t>(row), p.begin() + static_cast<std::ptrdiff_t>(row) + S, 0.0);
  }
  return from_vector(p, scores.shape(), scores.dtype());
}

// Compares r with ref() when every input is tame (the -inf of a 0 / -inf mask allowed).
void attention_check(Ctx& c, const char* op, const Tensor& r, const Qkv& a, const std::function<Tensor()>& ref) {
  bool ok = tame(a.q) && tame(a.k) && tame(a.v) && r.numel() <= 4 * kMaxNumel &&
            (!a.scale || (std::isfinite(*a.scale) && std::abs(*a.scale) <= 100));
  if (a.mask_kind == 2) ok = ok && tame(a.mask);
  if (ok) {
    NoGradGuard no_grad;
    const double tol = r.dtype() == DType::f64 ? 1e-8 : 2e-3;
    check_agree(r.detach(), ref().detach(), tol, tol, op, "softmax(scale Q K^T + M) V as matmul and softmax");
  }
  finish(c, op, r, {a.q, a.k, a.v, a.mask_kind == 2 ? a.mask : Tensor()});
}

void attention_op(Ctx& c) {
  const Qkv a = decode_qkv(c);
  const double p = c.byte() % 4 == 0 ? c.real() : 0.0;  // dropout: NaN, negative, 1, ... must be refused
  const Tensor r = scaled_dot_product_attention(a.q, a.k, a.v, a.mask, p, a.is_causal, a.scale, &c.gen());
  if (p != 0.0) return finish(c, "scaled_dot_product_attention", r, {a.q, a.k, a.v});
  attention_check(c, "scaled_dot_product_attention", r, a, [&] { return matmul(attention_weights_reference(a), a.v); });
}

void attention_weights_op(Ctx& c) {
  const Qkv a = decode_qkv(c);
  const Tensor r = attention_weights(a.q, a.k, a.mask, a.is_causal, a.scale);
  attention_check(c, "attention_weights", r, a, [&] { return attention_weights_reference(a); });
}

// ---- cross_entropy / nll_loss with options ----------------------------------------------------

// logits (N, C, d..) as [N, C, inner]; lp = log_softmax along C. Class targets y:
//   loss_n = (1 - eps) (-w_y lp_y) + (eps / C) (-sum_c w_c lp_c), 0 where y == ignore_index;
//   mean = sum / sum_n w_{y_n} over the kept targets.
// Probability targets t: t' = (1 - eps) t + eps / C, loss_n = -sum_c w_c t'_c lp_c; mean = sum / n.
Tensor loss_reference(const Tensor& x, const Tensor& target, const LossOptions& o, bool log_probs_given) {
  const bool probs = target.shape() == x.shape();
  const int cax = x.dim() == 1 ? 0 : 1;
  const std::int64_t C = x.size(cax), N = x.dim() == 1 ? 1 : x.size(0);
  std::int64_t inner = 1;
  for (int d = cax + 1; d < x.dim(); ++d) inner *= x.size(d);
  const std::vector<double> xv = x.to_vector(), tv = target.to_vector();
  const std::vector<double> wv =
      o.weight.defined() ? o.weight.to_vector() : std::vector<double>(static_cast<std::size_t>(C), 1.0);
  const double eps = o.label_smoothing;
  std::vector<double> loss(static_cast<std::size_t>(N * inner));
  double total = 0, denominator = 0;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t j = 0; j < inner; ++j) {
      auto at = [&](std::int64_t cls) { return static_cast<std::size_t>((n * C + cls) * inner + j); };
      double m = -kInf, s = 0;
      for (std::int64_t k = 0; k < C; ++k) m = std::max(m, xv[at(k)]);
      for (std::int64_t k = 0; k < C; ++k) s += std::exp(xv[at(k)] - m);
      auto lp = [&](std::int64_t k) { return log_probs_given ? xv[at(k)] : xv[at(k)] - m - std::log(s); };
      double l = 0;
      if (probs) {
        for (std::int64_t k = 0; k < C; ++k)
          l -= wv[static_cast<std::size_t>(k)] * ((1 - eps) * tv[at(k)] + eps / static_cast<double>(C)) * lp(k);
        denominator += 1;
      } else {
        const auto y = static_cast<std::int64_t>(tv[static_cast<std::size_t>(n * inner + j)]);
        if (y != o.ignore_index) {
          l = -(1 - eps) * wv[static_cast<std::size_t>(y)] * lp(y);
          if (eps > 0)
            for (std::int64_t k = 0; k < C; ++k)
              l -= eps / static_cast<double>(C) * wv[static_cast<std::size_t>(k)] * lp(k);
          denominator += wv[static_cast<std::size_t>(y)];
        }
      }
      loss[static_cast<std::size_t>(n * inner + j)] = l;
      total += l;
    }
  Shape loss_shape = x.shape();
  loss_shape.erase(static_cast<std::size_t>(cax));
  if (o.reduction == Reduction::none) return from_vector(loss, loss_shape, x.dtype());
  return full({}, o.reduction == Reduction::sum ? total : total / denominator, x.dtype());
}

void loss_op(Ctx& c, bool nll) {
  const Tensor x = c.xf();
  const std::int64_t C = x.dim() >= 2 ? x.size(1) : x.dim() == 1 ? x.size(0) : 1;
  LossOptions o;
  o.reduction = static_cast<Reduction>(c.byte() % 3);
  static constexpr std::int64_t ignores[] = {-100, -1, 0, 1, 2};
  const std::uint8_t ig = c.byte();
  o.ignore_index = ig < 250 ? ignores[ig % 5] : c.i();
  o.label_smoothing = nll || c.flag() ? 0.0 : c.real();
  if (c.flag()) o.weight = c.flag() ? abs(randn(Shape{C}, x.dtype(), &c.gen())) : c.xf();
  Tensor t;
  if (!nll && c.flag()) {
    t = c.flag() ? softmax(fresh(c, x.shape(), x.dtype()), x.dim() == 1 ? 0 : 1).detach() : c.x();
  } else {
    Shape ts = x.shape();
    if (ts.ndim() > 0) ts.erase(x.dim() == 1 ? 0 : 1);
    t = c.flag() ? c.x() : c.index(ts, C);
  }
  if (std::getenv("NG_FUZZ_TRACE"))
    std::fprintf(stderr, "api_fuzz:   input %s target %s %s ignore %lld smoothing %g weight %s reduction %d\n",
                 fmt::format("{}", x.shape()).c_str(), fmt::format("{}", t.shape()).c_str(),
                 fmt::format("{}", t.dtype()).c_str(), static_cast<long long>(o.ignore_index), o.label_smoothing,
                 o.weight.defined() ? fmt::format("{}", o.weight.shape()).c_str() : "none",
                 static_cast<int>(o.reduction));
  const Tensor r = nll ? nll_loss(x, t, o) : cross_entropy(x, t, o);
  // the reference loops over the C classes of every sample: bounded only when both counts are
  // (an empty x may have C = INT64_MAX, or 2^40 samples of 0 classes)
  Shape samples = x.shape();
  if (samples.ndim() > 0) samples.erase(x.dim() == 1 ? 0 : 1);
  const bool small = C <= kMaxNumel && shape_fits(samples) && samples.numel() <= 4 * kMaxNumel;
  const bool ok = small && tame(x) && tame(t) && (!o.weight.defined() || tame(o.weight));
  if (ok) {
    NoGradGuard no_grad;
    const double tol = x.dtype() == DType::f64 ? 1e-8 : 2e-3;
    check_agree(r.detach(), loss_reference(x.detach(), t.detach(), o, nll), tol, tol,
                nll ? "nll_loss" : "cross_entropy", "a loop over the samples");
  }
  finish(c, nll ? "nll_loss" : "cross_entropy", r, {x, t});
}

// ---- in-place updates through views -------------------------------------------------------

// A view of base: itself, a transpose, a strided slice, a select, or an expanded view (writing
// through one that repeats an element is refused).
Tensor view_of(Ctx& c, const Tensor& base) {
  switch (c.byte() % 5) {
    case 1:
      return transpose(base, 0, -1);
    case 2:
      return slice(base, c.i(), c.i(), c.i(), c.i());
    case 3:
      return select(base, c.i(), c.i());
    case 4:
      return expand(base, c.shape());
    default:
      return base;
  }
}

// view <- f(view, other) through a view of base: the view's values must equal the out-of-place
// op on the values before, and (when other does not alias base) base must equal the same update
// done through the same view of a contiguous copy. A view too large to snapshot (an expanded
// one) is only updated: the update must refuse it or finish quickly.
void inplace(Ctx& c, const char* op, const Tensor& other, const std::function<void(Tensor&, const Tensor&)>& update,
             const std::function<Tensor(const Tensor&, const Tensor&)>& out_of_place) {
  const Tensor base = c.flag() ? c.x() : c.x().detach().clone();  // a slot's tensor (aliases!) or a copy
  Ctx replay = c;  // decodes the same view again, for the contiguous copy
  Tensor view = view_of(c, base);
  const bool small = view.numel() <= 4 * kMaxNumel;
  const Tensor before = small ? contig(view).clone() : Tensor(), other_before = contig(other).clone();
  const Tensor copy = contig(base).clone();
  update(view, other);
  check_tensor(base, op);
  if (!small) return;
  NoGradGuard no_grad;
  check_agree(contig(view), out_of_place(before, other_before), rtol_of(base.dtype()), 0, op, "the out-of-place op");
  if (other.defined() && other.impl().storage == base.impl().storage) return;
  Tensor copy_view = view_of(replay, copy);
  update(copy_view, other_before);
  check_agree(contig(base), copy, rtol_of(base.dtype()), 0, op, "the update through a view of a contiguous copy");
}

void copy_op(Ctx& c) {
  const Tensor src = c.x();
  inplace(
      c, "copy_", src, [](Tensor& v, const Tensor& o) { v.copy_(o); },
      [](const Tensor& v, const Tensor& o) { return expand(o.to(v.dtype()), v.shape()); });
}
void add_op(Ctx& c) {
  const Tensor o = c.x();
  const double alpha = c.real();
  inplace(
      c, "add_", o, [alpha](Tensor& v, const Tensor& x) { v.add_(x, alpha); },
      [alpha](const Tensor& v, const Tensor& x) { return add(v, mul(x, alpha)); });
}
void mul_op(Ctx& c) {
  const Tensor o = c.x();
  inplace(
      c, "mul_", o, [](Tensor& v, const Tensor& x) { v.mul_(x); },
      [](const Tensor& v, const Tensor& x) { return expand(mul(v, x), v.shape()); });
}
void mul_scalar_op(Ctx& c) {
  const double s = c.real();
  inplace(
      c, "mul_", {}, [s](Tensor& v, const Tensor&) { v.mul_(s); },
      [s](const Tensor& v, const Tensor&) { return mul(v, s); });
}
void fill_op(Ctx& c) {
  const double s = c.real();
  inplace(
      c, "fill_", {}, [s](Tensor& v, const Tensor&) { v.fill_(s); },
      [s](const Tensor& v, const Tensor&) { return full(v.shape(), s, v.dtype()); });
}

// ---- text data (io/text.h): windows and splits over decoded ids ---------------------------------

std::vector<std::int64_t> ids(Ctx& c) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(c.byte() % 40));
  for (auto& x : v) x = c.byte() % 8;
  return v;
}

void text_windows_op(Ctx& c) {
  const std::vector<std::int64_t> v = ids(c);
  const std::int64_t block = c.i(), stride = c.i();
  const io::TensorDataset ds = io::text_windows(v, block, stride);
  check_tensor(ds.inputs, "text_windows"), check_tensor(ds.targets, "text_windows");
}
void sample_windows_op(Ctx& c) {
  const std::vector<std::int64_t> v = ids(c);
  const std::int64_t block = c.i(), batch = c.i();
  const io::TensorDataset ds = io::sample_windows(v, block, batch, c.gen());
  check_tensor(ds.inputs, "sample_windows"), check_tensor(ds.targets, "sample_windows");
}
void split_text_op(Ctx& c) {
  std::u32string text(static_cast<std::size_t>(c.byte() % 20), U'a');
  const double f = c.real();
  const auto [train, val] = io::split_text(text, f);
  if (train.size() + val.size() != text.size())
    violation(fmt::format("split_text: {} + {} characters from {}", train.size(), val.size(), text.size()));
}
void word_examples_op(Ctx& c) {
  std::vector<std::u32string> words(static_cast<std::size_t>(c.byte() % 4));
  for (auto& w : words) w = std::u32string(static_cast<std::size_t>(c.byte() % 5), U'a' + c.byte() % 3);
  const io::CharVocab vocab = io::CharVocab::from_text(U"abc", c.flag() ? std::optional(U'.') : std::nullopt);
  const io::TensorDataset ds = io::word_examples(words, vocab, c.i());
  check_tensor(ds.inputs, "word_examples"), check_tensor(ds.targets, "word_examples");
}

const Op kRefOps[] = {
    {"pad_modes", pad_op},
    {"scaled_dot_product_attention", attention_op},
    {"attention_weights", attention_weights_op},
    {"cross_entropy_options", [](Ctx& c) { loss_op(c, false); }},
    {"nll_loss_options", [](Ctx& c) { loss_op(c, true); }},
    {"copy_", copy_op},
    {"add_", add_op},
    {"mul_", mul_op},
    {"mul_scalar_", mul_scalar_op},
    {"fill_", fill_op},
    {"text_windows", text_windows_op},
    {"sample_windows", sample_windows_op},
    {"split_text", split_text_op},
    {"word_examples", word_examples_op},
};

}  // namespace

std::span<const Op> new_op_table() {
  return kRefOps;
}

}  // namespace ng::fuzz
