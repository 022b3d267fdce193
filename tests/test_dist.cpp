// ng::dist in one process (a world of size 1, no MPI needed): the process group's checks,
// DistributedSampler's PyTorch semantics, DistributedDataParallel's bookkeeping, SyncBatchNorm
// = BatchNorm, convert_sync_batchnorm, and the tape's queue_callback. The same code across
// real processes is tested under mpiexec by tests/dist/test_dist_mpi.cpp.
#include "dist/ddp.h"
#include "dist/dist.h"
#include "dist/sampler.h"
#include "dist/sync_batch_norm.h"
#include "examples/models.h"
#include "tests/helpers.h"

using namespace ng;
namespace dist = ng::dist;

namespace {
std::vector<std::int64_t> shard(std::int64_t n, int replicas, int rank, bool shuffle, bool drop_last,
                                std::int64_t epoch = 0) {
  dist::DistributedSampler s(n, {.num_replicas = replicas, .rank = rank, .shuffle = shuffle, .seed = 3,
                                 .drop_last = drop_last});
  s.set_epoch(epoch);
  return s.indices();
}
using V = std::vector<std::int64_t>;
}  // namespace

TEST_CASE("dist: LocalGroup is a world of one where every collective is the identity") {
  dist::LocalGroup g;
  CHECK(g.rank() == 0);
  CHECK(g.size() == 1);
  Tensor t = tensor({1, 2, 3}, {3}, DType::f64);
  g.all_reduce(t, dist::ReduceOp::mean);
  test::check_values(t, {1, 2, 3}, 1e-12);
  Tensor i = from_vector(V{4, 5}, {2});
  g.all_reduce(i, dist::ReduceOp::max);
  g.broadcast(i, 0);
  test::check_values(i, {4, 5}, 1e-12);
  Tensor a = g.all_gather(full({2, 3}, 7.0));
  CHECK(a.shape() == Shape{1, 2, 3});
  test::check_values(a, std::vector<double>(6, 7.0), 1e-12);
  g.barrier();
  CHECK(g.stats().collectives == 5);
  CHECK(g.stats().bytes == 24 + 16 + 16 + 24);
}

TEST_CASE("dist: collective argument errors") {
  dist::LocalGroup g;
  Tensor nc = zeros({3, 4}).transpose(0, 1);
  CHECK_THROWS_WITH_AS(g.all_reduce(nc), doctest::Contains("all_reduce: the tensor must be contiguous (shape [4, 3]"),
                       ValueError);
  CHECK_THROWS_WITH_AS(g.broadcast(nc), doctest::Contains("broadcast: the tensor must be contiguous"), ValueError);
  Tensor i = zeros({2}, DType::i64);
  CHECK_THROWS_WITH_AS(g.all_reduce(i, dist::ReduceOp::mean),
                       doctest::Contains("ReduceOp::mean needs a floating tensor (float32 or float64), got int64"),
                       DTypeError);
  Tensor f = zeros({2});
  CHECK_THROWS_WITH_AS(g.broadcast(f, 1), doctest::Contains("broadcast: root must be a rank in [0, 1): got 1"),
                       ValueError);
  Tensor undefined;
  CHECK_THROWS_WITH_AS(g.all_reduce(undefined), doctest::Contains("all_reduce: the tensor is undefined"), ValueError);
}

TEST_CASE("dist: without init the world is missing, and layers fall back to one process") {
  if (dist::is_initialized()) return;  // (never, in this executable)
  CHECK_THROWS_WITH_AS(dist::world(), doctest::Contains("call ng::dist::init() first"), dist::DistError);
  CHECK_THROWS_AS(dist::rank(), dist::DistError);
  CHECK(dist::group_or_world(nullptr) == nullptr);
}

TEST_CASE("DistributedSampler: PyTorch's shards, padding and drop_last") {
  // 10 samples on 3 ranks: padded to 12 by repeating 0, 1; every rank gets 4.
  CHECK(shard(10, 3, 0, false, false) == V{0, 3, 6, 9});
  CHECK(shard(10, 3, 1, false, false) == V{1, 4, 7, 0});
  CHECK(shard(10, 3, 2, false, false) == V{2, 5, 8, 1});
  // drop_last: cut to 9; every rank gets 3.
  CHECK(shard(10, 3, 0, false, true) == V{0, 3, 6});
  CHECK(shard(10, 3, 2, false, true) == V{2, 5, 8});
  // Padding longer than the data: repeated cyclically (2 samples, 5 ranks).
  V all;
  for (int r = 0; r < 5; ++r)
    for (auto i : shard(2, 5, r, false, false)) all.push_back(i);
  CHECK(all == V{0, 1, 0, 1, 0});
  CHECK(shard(2, 5, 4, false, true).empty());
  dist::DistributedSampler s(10, {.num_replicas = 3, .rank = 1, .shuffle = true, .seed = 0, .drop_last = false});
  CHECK(s.num_samples() == 4);
  CHECK(s.total_size() == 12);
}

TEST_CASE("DistributedSampler: the shuffle is fixed by seed + epoch and the shards partition it") {
  const V e0 = shard(11, 2, 0, true, true, 1e-12);
  CHECK(e0 == shard(11, 2, 0, true, true, 0));  // deterministic
  CHECK(e0 != shard(11, 2, 0, true, true, 1));  // set_epoch changes the order
  V both = e0;
  for (auto i : shard(11, 2, 1, true, true, 0)) both.push_back(i);
  std::sort(both.begin(), both.end());
  CHECK(std::adjacent_find(both.begin(), both.end()) == both.end());  // disjoint
  CHECK(both.size() == 10);
  // shard() gathers exactly those rows.
  io::TensorDataset data{arange(11, DType::f64).reshape({11, 1}), arange(11, DType::i64)};
  dist::DistributedSampler s(11, {.num_replicas = 2, .rank = 0, .shuffle = true, .seed = 3, .drop_last = true});
  io::TensorDataset mine = s.shard(data);
  CHECK(mine.size() == 5);
  std::vector<double> expect(e0.begin(), e0.end());
  test::check_values(mine.targets, expect, 1e-12);
  test::check_values(mine.inputs, expect, 1e-12);
}

TEST_CASE("DistributedSampler: errors") {
  CHECK_THROWS_WITH_AS(dist::DistributedSampler(10, {.num_replicas = 2, .rank = 2}),
                       doctest::Contains("invalid rank 2: rank must be in [0, 1]"), ValueError);
  CHECK_THROWS_WITH_AS(dist::DistributedSampler(10, {.num_replicas = 0, .rank = 0}),
                       doctest::Contains("num_replicas must be >= 1: got 0"), ValueError);
  CHECK_THROWS_WITH_AS(dist::DistributedSampler(-1), doctest::Contains("dataset_size must be >= 0: got -1"),
                       ValueError);
  dist::DistributedSampler s(4);
  io::TensorDataset data{zeros({5, 1}), zeros({5}, DType::i64)};
  CHECK_THROWS_WITH_AS(s.shard(data), doctest::Contains("made for 4 samples, the dataset has 5"), ShapeError);
}

TEST_CASE("DistributedDataParallel: one process: the wrapped module, state_dict names, sync count, no_sync") {
  Generator gen(1);
  auto model = demo::fmnist_cnn(demo::Norm::batch, &gen);
  auto ddp = std::make_shared<dist::DistributedDataParallel>(model);
  CHECK(ddp->state_dict().front().first == "module.0.weight");
  CHECK(ddp->num_buckets() == 1);  // about 420k float parameters (1.7 MB): far below 25 MB
  CHECK(ddp->bytes_per_sync() == model->num_parameters() * 4);
  Tensor x = randn({3, 1, 28, 28}, DType::f32, &gen);
  Tensor y = (*ddp)(x);
  CHECK(test::max_abs_diff(y, (*model)(x)) == 0.0);
  sum(y).backward();
  CHECK(ddp->num_syncs() == 1);
  {
    auto guard = ddp->no_sync();
    sum((*ddp)(x)).backward();
  }
  CHECK(ddp->num_syncs() == 1);
  CHECK_THROWS_WITH_AS(dist::DistributedDataParallel(nullptr), doctest::Contains("the module is null"), ValueError);
  CHECK_THROWS_WITH_AS(dist::DistributedDataParallel(model, {.bucket_cap_mb = 0}),
                       doctest::Contains("bucket_cap_mb must be > 0: got 0"), ValueError);
}

TEST_CASE("queue_callback: runs once the whole backward has finished, refused outside a backward") {
  Tensor a = tensor({1, 2}, {2}, DType::f64).requires_grad_();
  bool leaf_grad_seen = false;
  Tensor b = record("marker", {a}, mul(a.detach(), scalar(1.0, DType::f64)), [&](BackwardContext&, const Tensor& g) -> Grads {
    queue_callback([&] { leaf_grad_seen = a.grad().defined(); });  // a's gradient is final by then
    return {g};
  });
  sum(b).backward();
  CHECK(leaf_grad_seen);
  CHECK_THROWS_WITH_AS(queue_callback([] {}), doctest::Contains("called outside a backward pass"), AutogradError);
}

TEST_CASE("sync_batch_norm: on a group of one equals batch_norm (output, gradients, running stats) and gradchecks") {
  auto group = std::make_shared<dist::LocalGroup>();
  Tensor x = add(mul(test::rnd({5, 3, 2, 3}, 1, false), scalar(3.0, DType::f64)), scalar(100.0, DType::f64)).requires_grad_();
  Tensor w = test::rnd({3}, 2), b = test::rnd({3}, 3);
  Tensor rm1 = zeros({3}, DType::f64), rv1 = ones({3}, DType::f64), nbt1 = scalar(0, DType::i64);
  Tensor rm2 = rm1.clone(), rv2 = rv1.clone(), nbt2 = nbt1.clone();
  Tensor proj = test::rnd({5, 3, 2, 3}, 4, false);
  Tensor ys = dist::sync_batch_norm(x, rm1, rv1, w, b, 0.1, 1e-5, nbt1, group);
  auto gs = grad({sum(mul(ys, proj))}, {x, w, b});
  Tensor yb = batch_norm(x, rm2, rv2, w, b, true, 0.1, 1e-5, nbt2);
  auto gb = grad({sum(mul(yb, proj))}, {x, w, b});
  CHECK(test::max_abs_diff(ys, yb) < 1e-12);
  for (int i = 0; i < 3; ++i) CHECK(test::max_abs_diff(gs[i], gb[i]) < 1e-11);
  CHECK(test::max_abs_diff(rm1, rm2) < 1e-12);
  CHECK(test::max_abs_diff(rv1, rv2) < 1e-12);
  CHECK(nbt1.item() == 1);
  // Cumulative average (momentum None) as batch_norm's.
  Tensor rm3 = zeros({3}, DType::f64), rv3 = ones({3}, DType::f64), rm4 = rm3.clone(), rv4 = rv3.clone();
  Tensor n3 = scalar(0, DType::i64), n4 = scalar(0, DType::i64);
  for (int k = 0; k < 2; ++k) {
    NoGradGuard no_grad;
    dist::sync_batch_norm(x, rm3, rv3, w, b, std::nullopt, 1e-5, n3, group);
    batch_norm(x, rm4, rv4, w, b, true, std::nullopt, 1e-5, n4);
  }
  CHECK(test::max_abs_diff(rv3, rv4) < 1e-12);
  // float64 gradcheck of the communicating op (x, weight, bias), without running statistics.
  Tensor xs = test::rnd({4, 3, 5}, 5);
  CHECK_GRADCHECK(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return dist::sync_batch_norm(in[0], {}, {}, in[1], in[2], 0.1, 1e-5, {}, group);
      },
      {xs, w, b}));
  // No double backward through the communicating op: a clear error, not a wrong answer.
  Tensor y2 = dist::sync_batch_norm(xs, {}, {}, w, b, 0.1, 1e-5, {}, group);
  CHECK_THROWS_WITH_AS(grad({sum(mul(y2, y2))}, {xs}, {}, {.create_graph = true}),
                       doctest::Contains("double backward (create_graph) is not implemented"), AutogradError);
}

TEST_CASE("sync_batch_norm: errors") {
  auto group = std::make_shared<dist::LocalGroup>();
  CHECK_THROWS_WITH_AS(dist::sync_batch_norm(zeros({4, 3}), {}, {}, {}, {}, 0.1, 1e-5, {}, nullptr),
                       doctest::Contains("the process group is null"), ValueError);
  CHECK_THROWS_WITH_AS(dist::sync_batch_norm(zeros({4}), {}, {}, {}, {}, 0.1, 1e-5, {}, group),
                       doctest::Contains("at least 2 dims: got shape [4]"), ShapeError);
  CHECK_THROWS_WITH_AS(dist::sync_batch_norm(zeros({4, 3}), {}, {}, zeros({2}), {}, 0.1, 1e-5, {}, group),
                       doctest::Contains("weight must have C = 3 elements"), ShapeError);
  CHECK_THROWS_WITH_AS(dist::sync_batch_norm(zeros({4, 3}), zeros({3}), ones({3}), {}, {}, std::nullopt, 1e-5, {}, group),
                       doctest::Contains("momentum = None (cumulative average) needs num_batches_tracked"), ValueError);
  CHECK_THROWS_WITH_AS(dist::sync_batch_norm(zeros({1, 3}), {}, {}, {}, {}, 0.1, 1e-5, {}, group),
                       doctest::Contains("expected more than 1 value per channel when training: got 1 over all 1 ranks"),
                       ValueError);
}

TEST_CASE("SyncBatchNorm: without a process group it is BatchNorm exactly (same numbers, gradcheck, gradgradcheck)") {
  auto opt = nn::BatchNormOptions(3).momentum(0.2);
  nn::SyncBatchNorm sbn(opt);
  nn::BatchNorm2d bn(opt);
  sbn.to(DType::f64);
  bn.to(DType::f64);
  CHECK(sbn.repr() == "SyncBatchNorm(3, eps=1e-05, momentum=0.2, affine=True, track_running_stats=True)");
  Tensor x = test::rnd({4, 3, 2, 2}, 7);
  CHECK(test::max_abs_diff(sbn(x), bn(x)) == 0.0);
  CHECK(test::max_abs_diff(sbn.running_var, bn.running_var) == 0.0);
  CHECK_GRADCHECK(nn::gradcheck(sbn, x));
  Tensor w = sbn.weight, b = sbn.bias;
  CHECK_GRADCHECK(gradgradcheck([&](const std::vector<Tensor>&) { return sbn(x); }, {x, w, b}));
  // Any rank >= 2 (N, C, *), as PyTorch's; rank 1 is refused.
  Tensor x5 = test::rnd({2, 3, 2, 1, 2}, 8);
  CHECK(sbn(x5).shape() == x5.shape());
  CHECK_THROWS_WITH_AS(sbn(zeros({3}, DType::f64)), doctest::Contains("at least 2 dims: got shape [3]"), ShapeError);
}

TEST_CASE("convert_sync_batchnorm: every BatchNorm becomes a SyncBatchNorm sharing its tensors") {
  Generator gen(2);
  auto model = demo::fmnist_cnn(demo::Norm::batch, &gen);
  const auto before = model->state_dict();
  Tensor x = randn({2, 1, 28, 28}, DType::f32, &gen);
  model->eval();
  Tensor y0 = (*model)(x);
  nn::ModulePtr converted = dist::convert_sync_batchnorm(model);
  CHECK(converted == model);
  int syncs = 0;
  for (auto& [name, m] : model->named_modules()) {
    CHECK(dynamic_cast<nn::BatchNorm2d*>(m) == nullptr);
    CHECK(dynamic_cast<nn::BatchNorm1d*>(m) == nullptr);
    if (auto* s = dynamic_cast<nn::SyncBatchNorm*>(m)) {
      ++syncs;
      CHECK(!s->is_training());
    }
  }
  CHECK(syncs == 3);
  const auto after = model->state_dict();
  REQUIRE(after.size() == before.size());
  for (std::size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].first == before[i].first);
    CHECK(after[i].second.same(before[i].second));  // the same tensors
  }
  CHECK(test::max_abs_diff((*model)(x), y0) == 0.0);  // Sequential runs the new layers
  auto lone = dist::convert_sync_batchnorm(std::make_shared<nn::BatchNorm1d>(4));
  CHECK(lone->type_name() == "SyncBatchNorm");
  CHECK_THROWS_WITH_AS(model->replace_child("99", lone), doctest::Contains("no child module named '99'"), ValueError);
}
