#include "dist/process_group.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/tape.h"

namespace ng::dist {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::mean: return "mean";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "?";
}

namespace {

// Every DType (float32, float64, int64) has a backend counterpart; only undefined is refused.
void check_defined(const Tensor& t, const char* name) {
  if (!t.defined()) fail<ValueError>("{}: the tensor is undefined", name);
}

void check_contiguous(const Tensor& t, const char* name) {
  if (!t.is_contiguous())
    fail<ValueError>("{}: the tensor must be contiguous (shape {}, strides [{}]); pass t.contiguous() and use that "
                     "tensor (collectives work in place)",
                     name, t.shape(), fmt::join(t.strides(), ", "));
}

void* raw(const Tensor& t) {
  return static_cast<char*>(t.impl().storage->data) + t.offset() * static_cast<std::int64_t>(dtype_size(t.dtype()));
}

// Signature of one collective call: what every rank must agree on.
constexpr int kMaxDims = 6;
constexpr int kSigLen = 12;  // kind, op, root, dtype, ndim, numel, dims[6]
using Signature = std::array<std::int64_t, kSigLen>;

std::string describe(const Signature& s) {
  static const char* kinds[] = {"?", "barrier", "all_reduce", "all_gather", "broadcast"};
  const auto kind = s[0] >= 1 && s[0] <= 4 ? kinds[s[0]] : kinds[0];
  if (s[0] == 1) return "barrier()";
  std::vector<std::int64_t> dims(s.begin() + 6, s.begin() + 6 + std::min<std::int64_t>(s[4], kMaxDims));
  std::string shape = fmt::format("[{}{}]", fmt::join(dims, ", "), s[4] > kMaxDims ? ", ..." : "");
  std::string what = s[0] == 2   ? fmt::format("({})", reduce_op_name(static_cast<ReduceOp>(s[1])))
                     : s[0] == 4 ? fmt::format("(root {})", s[2])
                                 : std::string();
  return fmt::format("{}{} of {} {} ({} elements)", kind, what, dtype_name(static_cast<DType>(s[3])), shape, s[5]);
}

}  // namespace

void ProcessGroup::agree(Kind kind, const Tensor* t, ReduceOp op, int root, const char* name) {
  if (!check_ || size() == 1) return;
  Signature sig{};
  sig[0] = static_cast<std::int64_t>(kind);
  sig[1] = kind == Kind::all_reduce ? static_cast<std::int64_t>(op) : 0;
  sig[2] = kind == Kind::broadcast ? root : 0;
  if (t) {
    sig[3] = static_cast<std::int64_t>(t->dtype());
    sig[4] = t->dim();
    sig[5] = t->numel();
    for (int i = 0; i < std::min(t->dim(), kMaxDims); ++i) sig[6 + i] = t->shape()[i];
  }
  std::vector<Signature> all(static_cast<std::size_t>(size()));
  do_all_gather(sig.data(), all.data(), kSigLen, DType::i64);
  bool same = true;
  for (const auto& s : all) same = same && s == all[0];
  if (same) return;
  std::string calls;
  for (int r = 0; r < size(); ++r) calls += fmt::format("\n  rank {}: {}", r, describe(all[static_cast<std::size_t>(r)]));
  fail<DistError>("{}: the ranks called different collectives (every rank must call the same collectives in the same "
                  "order, with tensors of the same shape and dtype); this is rank {}:{}",
                  name, rank(), calls);
}

void ProcessGroup::barrier() {
  agree(Kind::barrier, nullptr, ReduceOp::sum, 0, "barrier");
  ++stats_.collectives;
  do_barrier();
}

void ProcessGroup::all_reduce(Tensor& t, ReduceOp op) {
  check_defined(t, "all_reduce");
  if (op == ReduceOp::mean && !is_floating(t.dtype()))
    fail<DTypeError>("all_reduce: ReduceOp::mean needs a floating tensor (float32 or float64), got {}; reduce with "
                     "sum and divide yourself",
                     t.dtype());
  check_contiguous(t, "all_reduce");
  agree(Kind::all_reduce, &t, op, 0, "all_reduce");
  count(t);
  do_all_reduce(raw(t), t.numel(), t.dtype(), op == ReduceOp::mean ? ReduceOp::sum : op);
  if (op == ReduceOp::mean && size() > 1) {
    NoGradGuard no_grad;
    Tensor d = t.detach();
    d.mul_(1.0 / size());
  }
}

Tensor ProcessGroup::all_gather(const Tensor& t) {
  check_defined(t, "all_gather");
  agree(Kind::all_gather, &t, ReduceOp::sum, 0, "all_gather");
  Tensor in = t.detach().contiguous();
  Shape dims = t.shape();
  dims.insert(0, size());
  Tensor out = empty(dims, t.dtype());
  count(t);
  do_all_gather(raw(in), raw(out), t.numel(), t.dtype());
  return out;
}

void ProcessGroup::broadcast(Tensor& t, int root) {
  check_defined(t, "broadcast");
  if (root < 0 || root >= size())
    fail<ValueError>("broadcast: root must be a rank in [0, {}): got {}", size(), root);
  check_contiguous(t, "broadcast");
  agree(Kind::broadcast, &t, ReduceOp::sum, root, "broadcast");
  count(t);
  do_broadcast(raw(t), t.numel(), t.dtype(), root);
}

void LocalGroup::abort(const std::string& reason, int code) {
  std::fprintf(stderr, "%s\n", reason.c_str());
  std::fflush(stderr);
  (void)code;
  std::abort();
}

void LocalGroup::do_all_gather(const void* in, void* out, std::int64_t count, DType d) {
  if (count > 0) std::memcpy(out, in, static_cast<std::size_t>(count) * dtype_size(d));
}

}  // namespace ng::dist
