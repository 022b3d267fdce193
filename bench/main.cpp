// normgrad's benchmark. Each row runs in normgrad and, when built with -DNORMGRAD_WITH_TORCH=ON,
// the identical work in LibTorch in the same process (same machine state, same OpenBLAS and
// OPENBLAS_CORETYPE), at 1 and 2 threads; it prints median times and normgrad / LibTorch.
//
//   normgrad_bench [--threads 1,2] [--min-time SECONDS] [--markdown FILE] [ROW ...]
//
// ROW filters by row name (tiny_ops, matmul, bandwidth, bn2d_fb, ln_fb, gn_fb, rms_fb).
// All tensors are float32. Normalization rows also report the achieved fraction of the
// machine's memory bandwidth, measured here with a STREAM-like copy and triad.
#include <omp.h>

#include <cblas.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "autograd/ops.h"
#include "autograd/random.h"
#include "autograd/tensor.h"
#include "bench/harness.h"
#ifdef NORMGRAD_WITH_TORCH
#include "bench/torch_rows.h"
namespace torch_rows = bench::torch_rows;
#endif

namespace bench {
void set_threads(int n) {
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}
}  // namespace bench

namespace {

using Work = std::function<void()>;
using Builder = std::function<Work()>;

struct Row {
  std::string name;
  std::string shape;
  Builder ours;
  Builder torch;            // empty: no LibTorch counterpart in this build
  std::string torch_note;   // what LibTorch runs, when it is not the same op
  double divide = 1;        // times are reported per `divide` (tiny_ops: per op)
  bool micro = false;       // report in microseconds instead of milliseconds
  double flops = 0;         // > 0: report GFLOP/s
  double bytes = 0;         // > 0: minimum bytes moved; report the fraction of bandwidth
  std::string bytes_rule;   // how `bytes` was counted
  Builder reference;        // matmul: cblas_sgemm called directly
};

struct Result {
  std::string name, shape, note;
  int threads = 0;
  double ours = 0, torch = 0, reference = 0;  // seconds per unit (median)
  const Row* row = nullptr;
};

// ---- normgrad rows ------------------------------------------------------------------------

ng::Generator& gen() {
  static ng::Generator g(1234);
  return g;
}
ng::Tensor leaf(ng::Tensor t) {
  t.requires_grad_();
  return t;
}
ng::Shape shape_of(const std::vector<std::int64_t>& v) { return ng::Shape(v.begin(), v.end()); }

Work ng_tiny_ops(int n) {
  ng::Tensor a = leaf(ng::ones({1})), b = leaf(ng::ones({1}));
  return [a, b, n]() mutable {
    ng::Tensor y = a;
    for (int i = 0; i < n; ++i) y = ng::add(y, b);
    y.backward();
    a.zero_grad();
    b.zero_grad();
  };
}

Work ng_matmul(int n) {
  ng::Tensor a = ng::randn({n, n}, ng::DType::f32, &gen()), b = ng::randn({n, n}, ng::DType::f32, &gen());
  return [a, b]() { ng::Tensor c = ng::matmul(a, b); };
}

Work cblas_matmul(int n) {
  auto a = std::make_shared<std::vector<float>>(static_cast<std::size_t>(n) * n, 0.5f);
  auto b = std::make_shared<std::vector<float>>(static_cast<std::size_t>(n) * n, 0.25f);
  auto c = std::make_shared<std::vector<float>>(static_cast<std::size_t>(n) * n);
  return [a, b, c, n]() {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a->data(), n, b->data(), n, 0.0f,
                c->data(), n);
  };
}

Work ng_batch_norm_fb(const std::vector<std::int64_t>& shape) {
  const std::int64_t C = shape[1];
  ng::Tensor x = leaf(ng::randn(shape_of(shape), ng::DType::f32, &gen()));
  ng::Tensor w = leaf(ng::ones({C})), b = leaf(ng::zeros({C}));
  ng::Tensor rm = ng::zeros({C}), rv = ng::ones({C});
  ng::Tensor dy = ng::randn(shape_of(shape), ng::DType::f32, &gen());
  return [=]() mutable {
    ng::Tensor y = ng::batch_norm(x, rm, rv, w, b, /*training=*/true, 0.1, 1e-5);
    y.backward(dy);
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  };
}

Work ng_layer_norm_fb(std::int64_t rows, std::int64_t d, bool rms) {
  ng::Tensor x = leaf(ng::randn({rows, d}, ng::DType::f32, &gen()));
  ng::Tensor w = leaf(ng::ones({d}));
  ng::Tensor b = rms ? ng::Tensor() : leaf(ng::zeros({d}));
  ng::Tensor dy = ng::randn({rows, d}, ng::DType::f32, &gen());
  return [=]() mutable {
    ng::Tensor y = rms ? ng::rms_norm(x, {d}, w, 1e-5) : ng::layer_norm(x, {d}, w, b, 1e-5);
    y.backward(dy);
    x.zero_grad();
    w.zero_grad();
    if (b.defined()) b.zero_grad();
  };
}

Work ng_group_norm_fb(const std::vector<std::int64_t>& shape, std::int64_t groups) {
  const std::int64_t C = shape[1];
  ng::Tensor x = leaf(ng::randn(shape_of(shape), ng::DType::f32, &gen()));
  ng::Tensor w = leaf(ng::ones({C})), b = leaf(ng::zeros({C}));
  ng::Tensor dy = ng::randn(shape_of(shape), ng::DType::f32, &gen());
  return [=]() mutable {
    ng::Tensor y = ng::group_norm(x, groups, w, b, 1e-5);
    y.backward(dy);
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  };
}

// ---- memory bandwidth (STREAM-like) ---------------------------------------------------------

// Three arrays of 512 MB each (1.5 GB, far beyond any cache), first touched by the threads
// that use them. STREAM's byte counts: copy c = a moves 2 arrays, triad a = b + s c moves 3
// (write-allocate traffic not counted). Returns GB/s (1e9 bytes) from the median of repetitions.
struct Bandwidth {
  double copy = 0, triad = 0;
};
Bandwidth measure_bandwidth(double min_time) {
  const std::size_t n = std::size_t{128} << 20;  // 128 Mi floats = 512 MB
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  float *pa = a.get(), *pb = b.get(), *pc = c.get();
  const auto N = static_cast<std::int64_t>(n);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < N; ++i) {
    pa[i] = 1.0f;
    pb[i] = 2.0f;
    pc[i] = 0.0f;
  }
  const double bytes = static_cast<double>(n * sizeof(float));
  const bench::Timing copy = bench::measure(
      [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < N; ++i) pc[i] = pa[i];
      },
      1, 5, min_time, 20);
  const bench::Timing triad = bench::measure(
      [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < N; ++i) pa[i] = pb[i] + 3.0f * pc[i];
      },
      1, 5, min_time, 20);
  return {2 * bytes / copy.median_s / 1e9, 3 * bytes / triad.median_s / 1e9};
}

std::string fmt_time(double s, bool micro) {
  return micro ? fmt::format("{:.3f} us", s * 1e6) : fmt::format("{:.3f} ms", s * 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> thread_counts{1, 2};
  double min_time = 0.5;
  std::string markdown;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      thread_counts.clear();
      for (const char* p = argv[++i]; *p;) {
        char* end = nullptr;
        thread_counts.push_back(static_cast<int>(std::strtol(p, &end, 10)));
        p = *end == ',' ? end + 1 : end;
      }
    } else if (a == "--min-time" && i + 1 < argc) {
      min_time = std::atof(argv[++i]);
    } else if (a == "--markdown" && i + 1 < argc) {
      markdown = argv[++i];
    } else if (a == "-h" || a == "--help") {
      std::puts("normgrad_bench [--threads 1,2] [--min-time SECONDS] [--markdown FILE] [ROW ...]");
      return 0;
    } else {
      only.push_back(a);
    }
  }
  auto wanted = [&](const std::string& name) {
    return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
  };

  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  fmt::print("normgrad benchmark (float32; medians of repetitions after warm-up)\n");
  fmt::print("OPENBLAS_CORETYPE={} (OpenBLAS core: {}; config: {})\n", coretype ? coretype : "(unset)",
             openblas_get_corename(), openblas_get_config());
#ifdef NORMGRAD_WITH_TORCH
  fmt::print("LibTorch {} in the same process (same OpenMP runtime and environment)\n", torch_rows::version());
#else
  fmt::print("built without LibTorch (-DNORMGRAD_WITH_TORCH=OFF): normgrad columns only\n");
#endif

  // ---- the rows ----
  constexpr int kTinyOps = 1000;
  constexpr int kMatmul = 1024;
  std::vector<Row> rows;
  auto add_row = [&rows](std::string name, std::string shape, Builder ours) -> Row& {
    rows.emplace_back();
    rows.back().name = std::move(name);
    rows.back().shape = std::move(shape);
    rows.back().ours = std::move(ours);
    return rows.back();
  };
  // Per-op cost of the framework: a chain of adds on one-element tensors, forward + backward,
  // divided by the number of adds.
  {
    Row& r = add_row("tiny_ops", fmt::format("{} x add [1]", kTinyOps), [] { return ng_tiny_ops(kTinyOps); });
    r.divide = kTinyOps;
    r.micro = true;
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [] { return torch_rows::tiny_ops(kTinyOps); };
#endif
  }
  {
    Row& r = add_row("matmul", fmt::format("{0}x{0}x{0}", kMatmul), [] { return ng_matmul(kMatmul); });
    r.flops = 2.0 * kMatmul * kMatmul * kMatmul;
    r.reference = [] { return cblas_matmul(kMatmul); };
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [] { return torch_rows::matmul(kMatmul); };
#endif
  }
  // Minimum bytes moved, by the data size S = numel(x) * 4 bytes:
  //  * BatchNorm: a channel's N*H*W values do not stay in cache between passes, so forward
  //    reads x twice (statistics, then normalize) and writes y; backward reads x and dy twice
  //    (the two reductions, then the elementwise pass) and writes dx: 3S + 5S = 8S.
  //  * LayerNorm / GroupNorm / RMSNorm: a row (or group) fits in L1, so each pass over it can
  //    hit cache: forward reads x once and writes y, backward reads x and dy once and writes
  //    dx: 2S + 3S = 5S.
  // weight/bias/statistics are negligible. Rows whose data fit in the last-level cache can
  // exceed 100%.
  const std::string bn_rule = "8S: fwd reads x twice + writes y; bwd reads x, dy twice + writes dx";
  const std::string row_rule = "5S: fwd reads x + writes y; bwd reads x, dy + writes dx";
  auto bytes_of = [](double numel, double passes) { return passes * 4.0 * numel; };
  for (const auto& s : std::vector<std::vector<std::int64_t>>{{64, 64, 14, 14}, {128, 128, 28, 28}}) {
    Row& r = add_row("bn2d_fb", fmt::format("({})", fmt::join(s, ",")), [s] { return ng_batch_norm_fb(s); });
    r.bytes = bytes_of(static_cast<double>(s[0] * s[1] * s[2] * s[3]), 8);
    r.bytes_rule = bn_rule;
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [s] { return torch_rows::batch_norm_fb(s); };
#endif
  }
  for (const auto& [rows_, d] : std::vector<std::pair<std::int64_t, std::int64_t>>{{1792, 512}, {4096, 1024}}) {
    const std::int64_t n = rows_, D = d;
    Row& r = add_row("ln_fb", fmt::format("({},{})", n, D), [n, D] { return ng_layer_norm_fb(n, D, false); });
    r.bytes = bytes_of(static_cast<double>(n * D), 5);
    r.bytes_rule = row_rule;
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [n, D] { return torch_rows::layer_norm_fb(n, D); };
#endif
  }
  {
    const std::vector<std::int64_t> s{64, 64, 14, 14};
    Row& r = add_row("gn_fb", "(64,64,14,14) G=32", [s] { return ng_group_norm_fb(s, 32); });
    r.bytes = bytes_of(64.0 * 64 * 14 * 14, 5);
    r.bytes_rule = row_rule;
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [s] { return torch_rows::group_norm_fb(s, 32); };
#endif
  }
  {
    Row& r = add_row("rms_fb", "(4096,1024)", [] { return ng_layer_norm_fb(4096, 1024, true); });
    r.bytes = bytes_of(4096.0 * 1024, 5);
    r.bytes_rule = row_rule;
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [] { return torch_rows::layer_norm_fb(4096, 1024, /*no_bias=*/true); };
    r.torch_note = "LibTorch 1.13 has no RMSNorm: the LibTorch column is its LayerNorm (weight, no bias)";
#endif
  }

  // ---- run ----
  std::vector<Result> results;
  std::vector<Bandwidth> bandwidth(thread_counts.size());
  const bool any_norm = wanted("bn2d_fb") || wanted("ln_fb") || wanted("gn_fb") || wanted("rms_fb");
  if (wanted("bandwidth") || any_norm) {
    for (std::size_t k = 0; k < thread_counts.size(); ++k) {
      bench::set_threads(thread_counts[k]);
      bandwidth[k] = measure_bandwidth(min_time);
      fmt::print("memory bandwidth, {} thread(s): copy {:.1f} GB/s, triad {:.1f} GB/s (3 x 512 MB arrays)\n",
                 thread_counts[k], bandwidth[k].copy, bandwidth[k].triad);
    }
  }
  std::fflush(stdout);

  for (const Row& row : rows) {
    if (!wanted(row.name)) continue;
    Work ours = row.ours();
    Work theirs = row.torch ? row.torch() : Work();
    Work ref = row.reference ? row.reference() : Work();
    if (!row.torch_note.empty()) fmt::print("note: {}: {}\n", row.name, row.torch_note);
    for (std::size_t k = 0; k < thread_counts.size(); ++k) {
      const int t = thread_counts[k];
      Result r{row.name, row.shape, "", t, 0, 0, 0, &row};
      bench::set_threads(t);
      r.ours = bench::measure(ours, 2, 5, min_time).median_s / row.divide;
      if (ref) r.reference = bench::measure(ref, 2, 5, min_time).median_s / row.divide;
#ifdef NORMGRAD_WITH_TORCH
      if (theirs) {
        torch_rows::set_threads(t);
        bench::set_threads(t);
        r.torch = bench::measure(theirs, 2, 5, min_time).median_s / row.divide;
      }
#endif
      if (row.flops > 0) {
        r.note = fmt::format("GFLOP/s: normgrad {:.1f}", row.flops / r.ours / 1e9);
        if (r.torch > 0) r.note += fmt::format(", LibTorch {:.1f}", row.flops / r.torch / 1e9);
        if (r.reference > 0) r.note += fmt::format(", cblas_sgemm {:.1f}", row.flops / r.reference / 1e9);
      }
      if (row.bytes > 0) {
        const double bw = bandwidth[k].triad * 1e9;
        r.note = fmt::format("of triad BW: normgrad {:.0f}%", 100 * row.bytes / r.ours / bw);
        if (r.torch > 0) r.note += fmt::format(", LibTorch {:.0f}%", 100 * row.bytes / r.torch / bw);
      }
      fmt::print("{:<9} {:<20} {} thr  normgrad {:>12}", r.name, r.shape, t, fmt_time(r.ours, row.micro));
      if (r.torch > 0)
        fmt::print("  LibTorch {:>12}  ratio {:5.2f}", fmt_time(r.torch, row.micro), r.ours / r.torch);
      fmt::print("  {}\n", r.note);
      std::fflush(stdout);
      results.push_back(r);
    }
  }

  // ---- markdown table (scripts/bench.sh puts it into docs/benchmarks.md) ----
  if (!markdown.empty()) {
    std::string md;
    md += "| row | shape | threads | normgrad | LibTorch | normgrad / LibTorch | notes |\n";
    md += "| --- | --- | ---: | ---: | ---: | ---: | --- |\n";
    for (const auto& r : results) {
      const bool micro = r.row->micro;
      const std::string unit = micro ? " per op" : "";
      md += fmt::format("| {} | {} | {} | {}{} | {} | {} | {} |\n", r.name, r.shape, r.threads, fmt_time(r.ours, micro),
                        unit, r.torch > 0 ? fmt_time(r.torch, micro) : "-",
                        r.torch > 0 ? fmt::format("{:.2f}", r.ours / r.torch) : "-", r.note);
    }
    md += "\n";
    for (std::size_t k = 0; k < thread_counts.size(); ++k)
      if (bandwidth[k].triad > 0)
        md += fmt::format("- Memory bandwidth, {} thread(s): copy {:.1f} GB/s, triad {:.1f} GB/s (STREAM-like, 3 x 512 MB arrays).\n",
                          thread_counts[k], bandwidth[k].copy, bandwidth[k].triad);
    md += fmt::format("- Minimum bytes per normalization row (S = numel(x) * 4 bytes): BatchNorm {}; LayerNorm, GroupNorm, RMSNorm {}.\n",
                      bn_rule, row_rule);
    for (const auto& r : rows)
      if (!r.torch_note.empty() && wanted(r.name)) md += fmt::format("- {}: {}.\n", r.name, r.torch_note);
    std::FILE* f = std::fopen(markdown.c_str(), "w");
    if (!f) {
      fmt::print(stderr, "cannot write {}\n", markdown);
      return 1;
    }
    std::fputs(md.c_str(), f);
    std::fclose(f);
  }
  return 0;
}
