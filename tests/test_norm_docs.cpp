// The claims of docs/normalization.md, as tests: each TEST_CASE is one statement the document
// makes about BatchNorm / LayerNorm / GroupNorm / InstanceNorm / RMSNorm, checked on numbers.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex> (std::function moves in the
// NFA builder) when this file is built with -O1 and the sanitizers: a false positive in the
// library's code, silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "tests/helpers.h"

using namespace ng;

namespace {

using test::max_abs;
using test::max_abs_diff;

// BatchNorm backward of Ioffe & Szegedy 2015 (Section 3), written as separate steps over an
// [N, C, L] input: dxhat, dvar, dmu, then dx, dgamma, dbeta. Independent of the library.
struct BnGrads {
  std::vector<double> dx, dgamma, dbeta;
};
BnGrads bn_backward_by_steps(const std::vector<double>& x, const std::vector<double>& dy, const std::vector<double>& gamma,
                             std::int64_t N, std::int64_t C, std::int64_t L, double eps) {
  BnGrads g{std::vector<double>(x.size()), std::vector<double>(static_cast<std::size_t>(C)),
            std::vector<double>(static_cast<std::size_t>(C))};
  const double m = static_cast<double>(N * L);
  auto at = [&](std::int64_t n, std::int64_t c, std::int64_t l) { return static_cast<std::size_t>((n * C + c) * L + l); };
  for (std::int64_t c = 0; c < C; ++c) {
    const double gc = gamma[static_cast<std::size_t>(c)];
    double mu = 0, var = 0;
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t l = 0; l < L; ++l) mu += x[at(n, c, l)] / m;
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t l = 0; l < L; ++l) var += (x[at(n, c, l)] - mu) * (x[at(n, c, l)] - mu) / m;
    double dvar = 0, dmu = 0, sum_dev = 0;
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t l = 0; l < L; ++l) {
        const double dxhat = dy[at(n, c, l)] * gc, dev = x[at(n, c, l)] - mu;
        dvar += dxhat * dev * -0.5 * std::pow(var + eps, -1.5);
        dmu += -dxhat / std::sqrt(var + eps);
        sum_dev += -2.0 * dev;
      }
    dmu += dvar * sum_dev / m;
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t l = 0; l < L; ++l) {
        const std::size_t i = at(n, c, l);
        const double dxhat = dy[i] * gc, dev = x[i] - mu;
        g.dx[i] = dxhat / std::sqrt(var + eps) + dvar * 2.0 * dev / m + dmu / m;
        g.dgamma[static_cast<std::size_t>(c)] += dy[i] * dev / std::sqrt(var + eps);
        g.dbeta[static_cast<std::size_t>(c)] += dy[i];
      }
  }
  return g;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("normalization docs: the step-by-step BatchNorm backward equals the fused one") {
  for (const Shape& s : {Shape{4, 2}, Shape{5, 3, 7}}) {
    INFO("x ", s);
    const std::int64_t N = s[0], C = s[1], L = s.ndim() == 3 ? s[2] : 1;
    Tensor x = test::rnd(s, 1), gamma = test::rnd(Shape{C}, 2), beta = test::rnd(Shape{C}, 3);
    const Tensor dy = test::rnd(s, 4, false);
    const Tensor y = batch_norm(x, {}, {}, gamma, beta, /*training=*/true);
    const auto g = ng::grad({y}, {x, gamma, beta}, {dy});
    const BnGrads h = bn_backward_by_steps(x.to_vector(), dy.to_vector(), gamma.to_vector(), N, C, L, 1e-5);
    CHECK(max_abs_diff(h.dx, g[0].to_vector()) < 1e-10);
    CHECK(max_abs_diff(h.dgamma, g[1].to_vector()) < 1e-10);
    CHECK(max_abs_diff(h.dbeta, g[2].to_vector()) < 1e-10);
  }
}

TEST_CASE("normalization docs: LayerNorm rows and BatchNorm channels have zero mean and unit variance") {
  // Shifted and scaled input: rows with different means and spreads.
  const Tensor x = test::rnd(Shape{5, 7}, 7, false) * 3.0 + 10.0;
  const double eps = 1e-12;  // so that var / (var + eps) is 1 to double precision
  const Tensor yl = layer_norm(x, Shape{7}, {}, {}, eps);
  CHECK(max_abs(mean(yl, {1})) < 1e-12);                       // per row (sample)
  CHECK(max_abs(var(yl, {1}, 0) - 1.0) < 1e-10);               // biased variance 1 per row
  CHECK(max_abs(mean(yl, {0})) > 1e-3);                        // ...but not per feature
  const Tensor yb = batch_norm(x, {}, {}, {}, {}, true, 0.1, eps);
  CHECK(max_abs(mean(yb, {0})) < 1e-12);                       // per feature (channel)
  CHECK(max_abs(var(yb, {0}, 0) - 1.0) < 1e-10);
  CHECK(max_abs(mean(yb, {1})) > 1e-3);                        // ...but not per sample
}

TEST_CASE("normalization docs: sum of layer_norm has zero gradient, a weighted sum does not") {
  Tensor x = test::rnd(Shape{3, 5}, 11);
  const Tensor b = test::rnd(Shape{5}, 12, false);
  CHECK(max_abs(ng::grad({sum(layer_norm(x, Shape{5}, {}, b))}, {x})[0]) < 1e-12);
  const Tensor w = test::rnd(Shape{5}, 13, false);  // a non-uniform weight breaks the symmetry
  CHECK(max_abs(ng::grad({sum(layer_norm(x, Shape{5}, w, b))}, {x})[0]) > 1e-3);
  // BatchNorm in training: the same for the sum over a channel; RMSNorm subtracts no mean.
  CHECK(max_abs(ng::grad({sum(batch_norm(x, {}, {}, {}, {}, true))}, {x})[0]) < 1e-12);
  CHECK(max_abs(ng::grad({sum(rms_norm(x, Shape{5}))}, {x})[0]) > 1e-3);
}

TEST_CASE("normalization docs: BatchNorm couples the samples in training, not in eval") {
  Tensor x = test::rnd(Shape{4, 3}, 21);
  // Gradient of y[0, 0] (one-hot output gradient) with respect to every x.
  Tensor e = zeros(Shape{4, 3}, DType::f64);
  e.data<double>()[0] = 1.0;
  const Tensor g_train = ng::grad({batch_norm(x, {}, {}, {}, {}, /*training=*/true)}, {x}, {e})[0];
  CHECK(std::abs(g_train.at({1, 0})) > 1e-3);  // sample 1 moves sample 0's output
  CHECK(g_train.at({1, 1}) == 0.0);            // ...but only within channel 0
  const Tensor rm = test::rnd(Shape{3}, 22, false), rv = test::rnd_pos(Shape{3}, 23).detach();
  const Tensor g_eval = ng::grad({batch_norm(x, rm, rv, {}, {}, /*training=*/false)}, {x}, {e})[0];
  CHECK(g_eval.at({1, 0}) == 0.0);
  CHECK(g_eval.at({0, 0}) == doctest::Approx(1.0 / std::sqrt(rv.at({0}) + 1e-5)));
  // LayerNorm never couples samples.
  const Tensor g_ln = ng::grad({layer_norm(x, Shape{3})}, {x}, {e})[0];
  for (std::int64_t j = 0; j < 3; ++j) CHECK(g_ln.at({1, j}) == 0.0);
}

TEST_CASE("normalization docs: a sample's LayerNorm output ignores the batch, its BatchNorm output does not") {
  Tensor x = test::rnd(Shape{4, 5}, 31, false);
  Tensor x2 = x.clone();
  x2.data<double>()[3 * 5 + 2] += 4.0;  // change sample 3 only
  const auto row0 = [](const Tensor& t) { return slice(t, 0, 0, 1); };
  CHECK(max_abs_diff(row0(layer_norm(x, Shape{5})), row0(layer_norm(x2, Shape{5}))) == 0.0);
  CHECK(max_abs_diff(row0(batch_norm(x, {}, {}, {}, {}, true)), row0(batch_norm(x2, {}, {}, {}, {}, true))) > 1e-3);
}

TEST_CASE("normalization docs: eval-mode BatchNorm is an affine map per channel") {
  const Tensor x = test::rnd(Shape{5, 3, 2}, 41, false);
  const Tensor rm = test::rnd(Shape{3}, 42, false), rv = test::rnd_pos(Shape{3}, 43).detach();
  const Tensor gamma = test::rnd(Shape{3}, 44, false), beta = test::rnd(Shape{3}, 45, false);
  const Tensor y = batch_norm(x, rm, rv, gamma, beta, /*training=*/false);
  // y = a * x + b with a = gamma / sqrt(running_var + eps), b = beta - a * running_mean.
  const Tensor a = gamma / sqrt(rv + 1e-5), b = beta - a * rm;
  const Tensor expect = x * reshape(a, Shape{1, 3, 1}) + reshape(b, Shape{1, 3, 1});
  CHECK(max_abs_diff(y, expect) < 1e-12);
}

TEST_CASE("normalization docs: running statistics use the unbiased variance and PyTorch's momentum") {
  const Tensor x = test::rnd(Shape{5, 3}, 51, false);
  Tensor rm = zeros(Shape{3}, DType::f64), rv = ones(Shape{3}, DType::f64);
  batch_norm(x, rm, rv, {}, {}, /*training=*/true, /*momentum=*/0.1);
  const Tensor m = mean(x, {0}), v_unbiased = var(x, {0}, 1);
  // running = (1 - momentum) * running + momentum * batch   (Keras' momentum 0.99 = 1 - 0.01)
  CHECK(max_abs_diff(rm, m * 0.1) < 1e-12);
  CHECK(max_abs_diff(rv, 0.9 + v_unbiased * 0.1) < 1e-12);
}

TEST_CASE("normalization docs: BatchNorm with two samples outputs signs, with one it refuses") {
  const Tensor x = test::rnd(Shape{2, 3}, 61, false);
  const Tensor y = batch_norm(x, {}, {}, {}, {}, true);
  for (std::int64_t c = 0; c < 3; ++c) {
    const double d = x.at({0, c}) - x.at({1, c});
    // xhat = +-(d/2) / sqrt(d^2/4 + eps): +-1 up to eps, whatever the values were
    CHECK(y.at({0, c}) == doctest::Approx((d > 0 ? 1.0 : -1.0) * std::abs(d / 2) / std::sqrt(d * d / 4 + 1e-5)));
    CHECK(std::abs(std::abs(y.at({0, c})) - 1.0) < 1e-3);
    CHECK(y.at({1, c}) == doctest::Approx(-y.at({0, c})));
  }
  CHECK_THROWS_WITH_AS(batch_norm(test::rnd(Shape{1, 3}, 62, false), {}, {}, {}, {}, true),
                       doctest::Contains("more than 1 value per channel"), ValueError);
}

TEST_CASE("normalization docs: GroupNorm spans LayerNorm and InstanceNorm") {
  const Tensor x = test::rnd(Shape{3, 4, 5}, 71, false);
  // One group: statistics over all of (C, L) per sample = LayerNorm over the trailing [4, 5].
  CHECK(max_abs_diff(group_norm(x, 1), layer_norm(x, Shape{4, 5})) < 1e-12);
  // C groups: one statistic per (sample, channel) = InstanceNorm.
  CHECK(max_abs_diff(group_norm(x, 4), instance_norm(x)) < 1e-12);
  // RMSNorm = LayerNorm without the mean subtraction: equal on rows with zero mean.
  const Tensor x0 = x - mean(x, {2}, true);
  CHECK(max_abs_diff(rms_norm(x0, Shape{5}, {}, 1e-5), layer_norm(x0, Shape{5})) < 1e-12);
}

// docs/normalization.md points at lines of the code ("norm_plain.cpp:57", "norm.cpp:105": the
// op and its kernels in autograd/ops/). When the code moves,
// this test names the reference that went stale: each one is listed here with a piece of
// the line it must land on (for a range "a-b": the first and the last line; a bare "}" must
// match the whole line, indentation included). Update the page and this table together.
TEST_CASE("normalization docs: every line reference into the norm op and its kernels points at its code") {
  struct Expect {
    const char* first;
    const char* last;  // for ranges
  };
  const std::map<std::string, Expect> refs = {
      {"norm.h:30-49", {"struct NormSpec {", "};"}},
      {"norm.h:40-48", {"static NormSpec batch(", "  }"}},  // the end of NormSpec::rms
      {"norm_plain.cpp:57", {"rstd[s] = 1.0 / std::sqrt(var[s] + eps);  // eps inside the root", nullptr}},
      {"norm.cpp:202-227", {"void update_running_stats(", "}"}},
      {"norm.cpp:210", {"const double unbias =", nullptr}},
      {"norm.cpp:273", {"if (N * L == 1)", nullptr}},
      {"norm_plain.cpp:42-63", {"void plain_forward(", "}"}},
      {"norm_plain.cpp:48-55", {"// mean = (1/n) sum x", "for (std::size_t s = 0; s < S; ++s) var[s] = m2[s] / n;"}},
      {"norm_plain.cpp:61", {"y[i] = xh * weight_of(weight, c)", nullptr}},
      {"norm_plain.cpp:65-99", {"void plain_backward(", "}"}},
      {"norm_kernels.h:61", {"inline double xhat(double x, double mean, double rstd)", nullptr}},
      {"norm_kernels.h:78-85", {"struct FloatCentre {", "};"}},
      {"norm_kernels.h:160-162", {"inline T dx(T rstd,", "}"}},
      {"norm_kernels.h:219", {"inline bool uses_columns(", nullptr}},
      {"norm_rows.cpp:213-231", {"void row_forward(const T* x", "}"}},
      {"norm_moments.cpp:146-169", {"void moments_kernel(const T* x", "}"}},
      {"norm_moments.cpp:166-167", {"mean[s] = m.mean;", "var[s] = std::max(m.m2 / m.n, 0.0);"}},
      {"norm_rows.cpp:228", {"rstd[s] = 1.0 / std::sqrt(std::max(var[s], 0.0) + eps);", nullptr}},
      {"norm_rows.cpp:104", {"yr[k] = static_cast<T>(xh *", nullptr}},
      {"norm_rows.cpp:120-125", {"const double scale = rstd[s]", "ye[e] = static_cast<T>("}},
      {"norm.cpp:105", {"return record(op,", nullptr}},
      {"norm_rows.cpp:236-399", {"void row_backward(const T* x", "}"}},
      {"norm_columns.cpp:265-281", {"void column_backward(const T* x", "}"}},
      {"norm_plain.cpp:81-82", {"if (dweight) dweight[c] += dy[i] * xh;", "if (dbias) dbias[c] += dy[i];"}},
      {"norm_rows.cpp:344-345", {"dw_t[c] += dyk * xh;", "db_t[c] += dyk;"}},
      {"norm_rows.cpp:380-381", {"dw_t[c] += sum_dy_xhat;", "db_t[c] += sum_dy;"}},
      {"norm_rows.cpp:396-397", {"if (dweight) dweight[c] += dw_part", "if (dbias) dbias[c] += db_part"}},
      {"norm_plain.cpp:79-80", {"sum_dxhat[s] += dxhat;", "sum_dxhat_xhat[s] += dxhat * xh;"}},
      {"norm_rows.cpp:341-342", {"sum_dxhat += w * dyk;", "sum_dxhat_xhat += w * dyk * xh;"}},
      {"norm_rows.cpp:377-378", {"sum_dxhat += w * sum_dy;", "sum_dxhat_xhat += w * sum_dy_xhat;"}},
      {"norm_plain.cpp:90-91", {"if (batch_stats && sp.subtract_mean) mean_dxhat[s]", "if (batch_stats) mean_dxhat_xhat[s]"}},
      {"norm_rows.cpp:387-388", {"const double mean_dxhat = batch_stats && sp.subtract_mean", "const double mean_dxhat_xhat = batch_stats ?"}},
      {"norm_plain.cpp:97", {"dx[i] = norm_kernels::dx(", nullptr}},
      {"norm_rows.cpp:173", {"dxr[k] = static_cast<T>(norm_kernels::dx(r, dxhat", nullptr}},
      {"norm_rows.cpp:196", {"dxe[e] = static_cast<T>(norm_kernels::dx(r, dxhat", nullptr}},
      {"norm_rows.cpp:387", {"const double mean_dxhat = batch_stats && sp.subtract_mean", nullptr}},
      {"norm.cpp:35-61", {"Grads backward_composite(", "}"}},
  };
  const std::filesystem::path root = std::filesystem::path(__FILE__).parent_path().parent_path();
  auto lines_of = [&](const std::filesystem::path& p) {
    std::ifstream in(root / p);
    REQUIRE_MESSAGE(in.good(), "cannot open ", (root / p).string());
    std::vector<std::string> lines{""};  // 1-based
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  };
  std::map<std::string, std::vector<std::string>> code;
  for (const char* f : {"norm.cpp", "norm.h", "norm_kernels.h", "norm_plain.cpp", "norm_moments.cpp", "norm_rows.cpp",
                        "norm_columns.cpp"})
    code[f] = lines_of(std::filesystem::path("autograd/ops") / f);
  std::stringstream doc;
  doc << std::ifstream(root / "docs/normalization.md").rdbuf();
  const std::string text = doc.str();
  REQUIRE(!text.empty());

  auto holds = [](const std::string& line, const char* want) {
    const std::string w(want);
    if (w.find_first_not_of(" };") == std::string::npos) return line == w;  // a closing brace, indentation exact
    return line.find(w) != std::string::npos;
  };
  std::set<std::string> seen;
  const std::regex ref_re(R"((norm(?:_[a-z]+)?\.(?:cpp|h)):(\d+)(?:-(\d+))?)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), ref_re); it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    const std::string ref = m.str(0);
    seen.insert(ref);
    INFO("docs/normalization.md refers to ", ref);
    const auto e = refs.find(ref);
    REQUIRE_MESSAGE(e != refs.end(), "a new reference: add it to the table of this test");
    const auto& lines = code.at(m.str(1));
    const std::size_t first = std::stoul(m.str(2)), last = m[3].matched ? std::stoul(m.str(3)) : first;
    REQUIRE(last < lines.size());
    CHECK_MESSAGE(holds(lines[first], e->second.first), "line ", first, " is now: ", lines[first]);
    if (m[3].matched) CHECK_MESSAGE(holds(lines[last], e->second.last), "line ", last, " is now: ", lines[last]);
  }
  for (const auto& [ref, _] : refs) CHECK_MESSAGE(seen.count(ref) == 1, ref, " is in the table but no longer in the page");
}
