// ng::dist across real processes: run by CTest under mpiexec with 2 and 3 ranks
// (tests/dist/CMakeLists.txt). Every rank runs every test case, in the same order, so the
// collectives inside them meet. A failed CHECK on any rank makes that rank exit non-zero,
// and mpiexec then fails the test.
//
//   mpiexec -n 2 ./build/ci/bin/normgrad_dist_tests            (as root: --allow-run-as-root)
//   mpiexec -n 2 ./build/ci/bin/normgrad_dist_tests --abort-test    (must end the job, not hang)
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "dist/ddp.h"
#include "dist/dist.h"
#include "dist/sampler.h"
#include "dist/sync_batch_norm.h"
#include "examples/models.h"
#include "optim/sgd.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dist = ng::dist;
using ng::DType;
using ng::Shape;
using ng::Tensor;

namespace {

int R() { return dist::rank(); }
int W() { return dist::world_size(); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector(), y = b.to_vector();
  REQUIRE(x.size() == y.size());
  double m = 0;
  for (std::size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace

TEST_CASE("dist: the world comes from mpirun") {
  CHECK(dist::is_initialized());
  CHECK(dist::world()->backend() == "mpi");
  CHECK(W() >= 2);
  CHECK(R() >= 0);
  CHECK(R() < W());
  dist::barrier();
}

TEST_CASE_TEMPLATE("dist: all_reduce sum, mean, max, min", T, float, double, std::int64_t) {
  const DType d = ng::dtype_of<T>();
  // Rank r holds [r + 1, 2 (r + 1), 3 (r + 1)] as a (3, 1) tensor.
  auto make = [&] { return ng::from_vector(std::vector<double>{R() + 1.0, 2 * (R() + 1.0), 3 * (R() + 1.0)}, {3, 1}, d); };
  const double s = W() * (W() + 1) / 2.0;  // sum of r + 1
  Tensor t = make();
  dist::all_reduce(t);
  CHECK(t.to_vector() == std::vector<double>{s, 2 * s, 3 * s});
  CHECK(t.shape() == Shape{3, 1});
  t = make();
  dist::all_reduce(t, dist::ReduceOp::max);
  CHECK(t.to_vector() == std::vector<double>{1.0 * W(), 2.0 * W(), 3.0 * W()});
  t = make();
  dist::all_reduce(t, dist::ReduceOp::min);
  CHECK(t.to_vector() == std::vector<double>{1, 2, 3});
  if constexpr (!std::is_same_v<T, std::int64_t>) {
    t = make();
    dist::all_reduce(t, dist::ReduceOp::mean);
    const auto m = t.to_vector();
    for (int i = 0; i < 3; ++i) CHECK(m[static_cast<std::size_t>(i)] == doctest::Approx((i + 1) * s / W()));
  } else {
    CHECK_THROWS_WITH_AS(dist::all_reduce(t, dist::ReduceOp::mean), doctest::Contains("needs a floating tensor"),
                         ng::DTypeError);
  }
}

TEST_CASE_TEMPLATE("dist: all_gather stacks every rank's tensor in rank order", T, float, double, std::int64_t) {
  Tensor t = ng::full({2, 3}, R() * 10.0, ng::dtype_of<T>());
  Tensor g = dist::all_gather(t.transpose(0, 1));  // a non-contiguous input is fine (copied)
  CHECK(g.shape() == Shape{W(), 3, 2});
  CHECK(g.dtype() == ng::dtype_of<T>());
  const auto v = g.to_vector();
  for (int r = 0; r < W(); ++r)
    for (int i = 0; i < 6; ++i) CHECK(v[static_cast<std::size_t>(r * 6 + i)] == r * 10.0);
}

TEST_CASE_TEMPLATE("dist: broadcast from any root", T, float, double, std::int64_t) {
  for (int root = 0; root < W(); ++root) {
    Tensor t = ng::full({4}, R() + 7.0, ng::dtype_of<T>());
    dist::broadcast(t, root);
    CHECK(t.to_vector() == std::vector<double>(4, root + 7.0));
  }
}

TEST_CASE("dist: errors are thrown before any communication") {
  Tensor t = ng::zeros({3, 4}).transpose(0, 1);
  CHECK_THROWS_WITH_AS(dist::all_reduce(t), doctest::Contains("must be contiguous"), ng::ValueError);
  Tensor u = ng::zeros({3});
  CHECK_THROWS_WITH_AS(dist::broadcast(u, W()), doctest::Contains("root must be a rank in [0,"), ng::ValueError);
  dist::barrier();  // the world still works
}

TEST_CASE("dist: mismatched collectives throw DistError on every rank, naming each rank's call") {
  auto group = dist::world();
  REQUIRE(group->check_collectives());
  // Shapes that differ: rank r reduces r + 3 floats.
  Tensor t = ng::zeros({R() + 3});
  try {
    group->all_reduce(t);
    FAIL("no DistError");
  } catch (const dist::DistError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("the ranks called different collectives") != std::string::npos);
    CHECK(msg.find("rank 0: all_reduce(sum) of float32 [3] (3 elements)") != std::string::npos);
    CHECK(msg.find("rank 1: all_reduce(sum) of float32 [4] (4 elements)") != std::string::npos);
  }
  // Different collectives altogether: rank 0 broadcasts doubles, the others all-reduce.
  Tensor u = ng::zeros({2}, R() == 0 ? DType::f64 : DType::f32);
  try {
    if (R() == 0) group->broadcast(u, 0);
    else group->all_reduce(u, dist::ReduceOp::max);
    FAIL("no DistError");
  } catch (const dist::DistError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("rank 0: broadcast(root 0) of float64 [2]") != std::string::npos);
    CHECK(msg.find("rank 1: all_reduce(max) of float32 [2]") != std::string::npos);
  }
  // A barrier against an all_gather.
  try {
    if (R() == 0) group->barrier();
    else (void)group->all_gather(u);
    FAIL("no DistError");
  } catch (const dist::DistError& e) {
    CHECK(std::string(e.what()).find("rank 0: barrier()") != std::string::npos);
  }
  group->barrier();  // and the group is still in step
}

TEST_CASE("dist: stats count collectives and payload bytes") {
  auto group = dist::world();
  group->reset_stats();
  Tensor a = ng::zeros({10}, DType::f64);
  group->all_reduce(a);
  Tensor b = ng::zeros({3}, DType::f32);
  group->broadcast(b, 0);
  CHECK(group->stats().collectives == 2);
  CHECK(group->stats().bytes == 80 + 12);
}

TEST_CASE("dist: DistributedSampler shards are disjoint, cover the data, and agree across ranks") {
  for (bool drop_last : {false, true})
    for (std::int64_t n : {10, 11, 2}) {
      dist::DistributedSampler s(n, {.shuffle = true, .seed = 5, .drop_last = drop_last});
      CHECK(s.num_replicas() == W());
      CHECK(s.rank() == R());
      for (std::int64_t epoch : {0, 1}) {
        s.set_epoch(epoch);
        const auto mine = s.indices();
        CHECK(static_cast<std::int64_t>(mine.size()) == s.num_samples());
        Tensor all = dist::all_gather(ng::from_vector(mine, Shape{s.num_samples()}));
        std::vector<std::int64_t> got;
        for (double v : all.to_vector()) got.push_back(static_cast<std::int64_t>(v));
        std::set<std::int64_t> distinct(got.begin(), got.end());
        if (drop_last) {
          CHECK(s.num_samples() == n / W());
          CHECK(distinct.size() == got.size());  // no sample twice
        } else {
          CHECK(s.num_samples() == (n + W() - 1) / W());
          CHECK(static_cast<std::int64_t>(distinct.size()) == n);  // every sample, some twice (padding)
        }
      }
    }
}

TEST_CASE("dist: DistributedDataParallel starts every replica from rank 0's state") {
  ng::Generator gen(100 + static_cast<std::uint64_t>(R()));  // a different initialization on every rank
  auto model = demo::fmnist_cnn(demo::Norm::batch, &gen);
  dist::DistributedDataParallel ddp(model);
  for (auto& [name, t] : ddp.state_dict()) {
    CHECK(name.rfind("module.", 0) == 0);
    Tensor g = dist::all_gather(t.detach());
    for (int r = 1; r < W(); ++r) CHECK(max_abs_diff(ng::select(g, 0, r), ng::select(g, 0, 0)) == 0.0);
  }
}

TEST_CASE("dist: DistributedDataParallel averages gradients in buckets, no_sync accumulates") {
  ng::Generator gen(7);
  auto model = std::make_shared<ng::nn::Sequential>(std::make_shared<ng::nn::Linear>(5, 4, true, &gen),
                                                    std::make_shared<ng::nn::Tanh>(),
                                                    std::make_shared<ng::nn::Linear>(4, 3, true, &gen));
  model->to(DType::f64);
  // A tiny bucket cap: one parameter per bucket (4 of them), as many all-reduces.
  dist::DistributedDataParallel ddp(model, {.bucket_cap_mb = 1e-6});
  CHECK(ddp.num_buckets() == 4);
  CHECK(ddp.bytes_per_sync() == (5 * 4 + 4 + 4 * 3 + 3) * 8);
  ng::Generator data_gen(50 + static_cast<std::uint64_t>(R()));
  Tensor x = ng::randn({3, 5}, DType::f64, &data_gen);

  // Expected: the mean over ranks of each rank's local gradient (computed without DDP).
  model->zero_grad();
  ng::sum(ng::mul((*model)(x), (*model)(x))).backward();
  std::vector<Tensor> expected;
  for (Tensor& p : model->parameters()) {
    Tensor g = p.grad().clone();
    dist::all_reduce(g, dist::ReduceOp::mean);
    expected.push_back(g);
  }
  model->zero_grad();
  Tensor y = ddp(x);
  ng::sum(ng::mul(y, y)).backward();
  CHECK(ddp.num_syncs() == 1);
  auto params = model->parameters();
  for (std::size_t i = 0; i < params.size(); ++i) CHECK(max_abs_diff(params[i].grad(), expected[i]) < 1e-14);

  // Gradient accumulation: two backwards under no_sync, then one synced: the average of the sums.
  model->zero_grad();
  {
    auto guard = ddp.no_sync();
    for (int k = 0; k < 2; ++k) {
      Tensor z = ddp(x);
      ng::sum(ng::mul(z, z)).backward();
    }
  }
  CHECK(ddp.num_syncs() == 1);
  Tensor z = ddp(x);
  ng::sum(ng::mul(z, z)).backward();
  CHECK(ddp.num_syncs() == 2);
  for (std::size_t i = 0; i < params.size(); ++i) {
    Tensor three = ng::mul(expected[i], ng::scalar(3.0, DType::f64));
    CHECK(max_abs_diff(params[i].grad(), three) < 1e-13);
  }
}

namespace {

// 50 SGD steps of a demo CNN in float64. Each step's global batch has 4 * world_size random
// images (the same on every rank: the generator is seeded by the step). `ranks` = 1: this
// process trains alone on the whole global batch (the reference); otherwise every rank trains
// its share (rows [4 r, 4 r + 4)) through DistributedDataParallel. Returns the final
// parameters and buffers.
std::vector<Tensor> train_cnn(demo::Norm norm, bool data_parallel, bool sync_bn, int steps = 50) {
  constexpr std::int64_t kPerRank = 4;
  ng::Generator init(3);
  auto model = demo::fmnist_cnn(norm, &init);
  model->to(DType::f64);
  std::shared_ptr<ng::nn::Module> net = model;
  if (data_parallel && sync_bn) net = dist::convert_sync_batchnorm(net);
  if (data_parallel) net = std::make_shared<dist::DistributedDataParallel>(net);
  ng::optim::SGD opt(net->parameters(), {.lr = 0.02, .momentum = 0.9});
  const std::int64_t global = kPerRank * W();
  for (int step = 0; step < steps; ++step) {
    ng::Generator data(1000 + static_cast<std::uint64_t>(step));
    Tensor x = ng::randn({global, 1, 28, 28}, DType::f64, &data);
    Tensor y = ng::randint({global}, 0, 10, &data);
    if (data_parallel) {
      x = ng::slice(x, 0, kPerRank * R(), kPerRank * (R() + 1)).contiguous();
      y = ng::slice(y, 0, kPerRank * R(), kPerRank * (R() + 1)).contiguous();
    }
    opt.zero_grad();
    ng::cross_entropy((*net)(x), y).backward();
    opt.step();
  }
  std::vector<Tensor> out;
  for (auto& [n, t] : model->state_dict()) out.push_back(t.detach().clone());
  return out;
}

double max_rel_diff(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!ng::is_floating(a[i].dtype())) continue;
    const auto x = a[i].to_vector(), y = b[i].to_vector();
    double scale = 1e-300;
    for (double v : x) scale = std::max(scale, std::abs(v));
    worst = std::max(worst, max_abs_diff(a[i], b[i]) / scale);
  }
  return worst;
}

}  // namespace

TEST_CASE("dist: 50 data-parallel steps of the demo CNN equal one process on the concatenated batches") {
  const auto reference = train_cnn(demo::Norm::none, false, false);
  const auto ddp = train_cnn(demo::Norm::none, true, false);
  const double diff = max_rel_diff(ddp, reference);
  if (R() == 0)
    MESSAGE(fmt::format("CNN without norm, {} ranks x 4 vs 1 process x {}: max relative parameter difference {:.3g}",
                        W(), 4 * W(), diff));
  CHECK(diff < 1e-10);
}

TEST_CASE("dist: with per-rank BatchNorm, data-parallel training does not equal one process") {
  const auto reference = train_cnn(demo::Norm::batch, false, false);
  const auto ddp = train_cnn(demo::Norm::batch, true, false);
  const double diff = max_rel_diff(ddp, reference);
  if (R() == 0)
    MESSAGE(fmt::format("BatchNorm CNN, per-rank statistics, {} ranks x 4 vs 1 process x {}: max relative parameter "
                        "difference {:.3g}",
                        W(), 4 * W(), diff));
  CHECK(diff > 1e-3);
}

TEST_CASE("dist: with SyncBatchNorm, data-parallel training equals one process again") {
  const auto reference = train_cnn(demo::Norm::batch, false, false);
  const auto ddp = train_cnn(demo::Norm::batch, true, true);
  const double diff = max_rel_diff(ddp, reference);
  if (R() == 0)
    MESSAGE(fmt::format("BatchNorm CNN with SyncBatchNorm, {} ranks x 4 vs 1 process x {}: max relative parameter and "
                        "running-statistics difference {:.3g}",
                        W(), 4 * W(), diff));
  CHECK(diff < 1e-10);
}

namespace {

// SyncBatchNorm over the ranks, rank r holding counts[r] samples of x (N, C, H, W), against
// BatchNorm in one process over all sum(counts) samples: output, input gradient, parameter
// gradients (summed over the ranks: each rank's are local) and running statistics.
void check_sync_bn_against_batch_norm(const std::vector<std::int64_t>& counts, double tol) {
  REQUIRE(static_cast<int>(counts.size()) == W());
  constexpr std::int64_t C = 3, H = 2, Wd = 3;
  std::int64_t total = 0, first = 0;
  for (int r = 0; r < W(); ++r) {
    if (r == R()) first = total;
    total += counts[static_cast<std::size_t>(r)];
  }
  const std::int64_t mine = counts[static_cast<std::size_t>(R())];
  ng::Generator gen(11);  // the same data on every rank
  Tensor x_all = ng::add(ng::mul(ng::randn({total, C, H, Wd}, DType::f64, &gen), ng::scalar(2.0, DType::f64)),
                         ng::scalar(5.0, DType::f64));
  Tensor proj = ng::randn({total, C, H, Wd}, DType::f64, &gen);  // loss = <y, proj>
  auto opt = ng::nn::BatchNormOptions(C).momentum(0.3);
  ng::nn::BatchNorm2d bn(opt);
  ng::nn::SyncBatchNorm sbn(opt);
  bn.to(DType::f64);
  sbn.to(DType::f64);
  for (auto* m : std::initializer_list<ng::nn::BatchNormBase*>{&bn, &sbn}) {
    ng::NoGradGuard no_grad;
    m->weight.copy_(ng::tensor({0.5, -1.5, 2.0}, {C}, DType::f64));
    m->bias.copy_(ng::tensor({0.1, 0.2, -0.3}, {C}, DType::f64));
  }
  // Reference: one process, all samples (two steps, so the running statistics move twice).
  Tensor xr = x_all.detach().clone().requires_grad_();
  Tensor yr;
  for (int step = 0; step < 2; ++step) {
    yr = bn(xr);
    if (step == 0) ng::sum(ng::mul(yr, proj)).backward();
  }
  // This rank's share.
  Tensor xs = ng::slice(x_all, 0, first, first + mine).contiguous().requires_grad_();
  Tensor ys;
  for (int step = 0; step < 2; ++step) {
    ys = sbn(xs);
    if (step == 0) ng::sum(ng::mul(ys, ng::slice(proj, 0, first, first + mine))).backward();
  }
  CHECK(ys.shape() == Shape{mine, C, H, Wd});
  if (mine > 0) {
    CHECK(max_abs_diff(ys, ng::slice(yr, 0, first, first + mine)) < tol);
    CHECK(max_abs_diff(xs.grad(), ng::slice(xr.grad(), 0, first, first + mine)) < tol);
  }
  for (auto [a, b] : {std::pair{sbn.weight, bn.weight}, std::pair{sbn.bias, bn.bias}}) {
    Tensor g = a.grad().clone();
    dist::all_reduce(g);
    CHECK(max_abs_diff(g, b.grad()) < tol);
  }
  CHECK(max_abs_diff(sbn.running_mean, bn.running_mean) < tol);
  CHECK(max_abs_diff(sbn.running_var, bn.running_var) < tol);
  CHECK(sbn.num_batches_tracked.item() == 2);
  // Running statistics identical (bit for bit) on every rank.
  Tensor rv = dist::all_gather(sbn.running_var);
  for (int r = 1; r < W(); ++r) CHECK(max_abs_diff(ng::select(rv, 0, r), ng::select(rv, 0, 0)) == 0.0);
  // Eval mode is BatchNorm's eval: no communication, the running statistics.
  sbn.eval();
  bn.eval();
  if (mine == 0) return;  // (BatchNorm's eval refuses an empty batch)
  auto before = dist::world()->stats().collectives;
  Tensor ye = sbn(xs.detach());
  CHECK(dist::world()->stats().collectives == before);
  CHECK(max_abs_diff(ye, ng::slice(bn(xr.detach()), 0, first, first + mine)) < tol);
}

}  // namespace

TEST_CASE("dist: SyncBatchNorm over ranks x 16 samples equals BatchNorm over all of them") {
  check_sync_bn_against_batch_norm(std::vector<std::int64_t>(static_cast<std::size_t>(W()), 16), 1e-12);
}

TEST_CASE("dist: SyncBatchNorm with uneven shards, one of them empty (3 + 5 + 0)") {
  std::vector<std::int64_t> counts{3, 5, 0};
  counts.resize(static_cast<std::size_t>(W()), 2);  // 2 ranks: 3 + 5; more than 3: 2 each beyond
  check_sync_bn_against_batch_norm(counts, 1e-12);
}

TEST_CASE("dist: SyncBatchNorm with one value in all refuses on every rank") {
  ng::nn::SyncBatchNorm sbn(2);
  Tensor x = ng::zeros({R() == 0 ? 1 : 0, 2});
  CHECK_THROWS_WITH_AS(sbn(x), doctest::Contains("expected more than 1 value per channel when training: got 1 over all"),
                       ng::ValueError);
}

namespace {

int abort_test() {
  // Rank 1 throws; rank 0 waits in a barrier that rank 1 never reaches. guarded_main must end
  // the job with rank 1's message instead of leaving rank 0 waiting forever.
  return dist::guarded_main([] {
    dist::init();
    if (dist::rank() == 1) throw ng::ValueError("deliberate failure on rank 1");
    dist::barrier();
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--abort-test") == 0) return abort_test();
#ifdef _OPENMP
  omp_set_num_threads(1);  // ranks share the machine's cores
#endif
  return dist::guarded_main([&] {
    dist::init(dist::Backend::mpi);
    doctest::Context ctx(argc, argv);
    if (dist::rank() != 0) ctx.setOption("minimal", true);  // one full report (rank 0's)
    const int failed = ctx.run();
    // Every rank reports; the job fails if any rank failed.
    Tensor f = ng::scalar(failed ? 1.0 : 0.0, DType::i64);
    dist::all_reduce(f, dist::ReduceOp::max);
    return f.item() != 0.0 ? 1 : 0;
  });
}
