// The tape: a thread-local record, in execution order, of every op whose inputs need
// gradients. backward() replays it in reverse.
//
// How it works (see docs/autograd.md for a worked example):
//  * An op computes its output, then calls record(name, inputs, output, backward_fn).
//    If grad mode is on and some input requires grad, record() creates a Node holding
//    the op's name, edges to where each input's gradient must go (the input's own node,
//    or the input itself if it is a leaf), whatever the backward captured (the "saved"
//    tensors), and the backward function. The output gets requires_grad and grad_fn=node.
//  * The thread's Tape lists the nodes in creation order (weak references, so a node lives
//    exactly as long as some tensor or later node still needs it).
//  * backward(root, g): put g in root's node, then walk the tape from the newest node to
//    the oldest. A node holding a pending gradient runs its backward function and passes
//    the input gradients along its edges (summing where several paths meet). Because the
//    tape is in execution order, every consumer of a tensor runs before its producer: a
//    reverse walk is a valid topological order, no sort needed.
//  * Clearing: after backward the nodes it ran are released (saved tensors freed, node
//    removed from the tape) unless retain_graph. Nodes nobody reaches (a forward pass
//    without backward) die with the last tensor that refers to them; the tape drops
//    expired entries as it grows. So a training loop's tape returns to empty every step.
//  * Backward functions are written with the same tensor ops as forward code. Normally
//    they run with grad mode off; with create_graph they are recorded too, which gives
//    gradients of gradients.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "autograd/small_vector.h"
#include "autograd/tensor.h"

namespace ng {

using Grads = std::vector<Tensor>;  // one gradient per input of an op (undefined = none)

class BackwardContext;
using BackwardFn = std::function<Grads(BackwardContext& ctx, const Tensor& grad_out)>;

// Where an input's gradient goes: the node that produced it, or the leaf tensor itself.
struct Edge {
  std::shared_ptr<Node> node;
  std::shared_ptr<TensorImpl> leaf;  // a leaf that requires grad
};

struct Node : std::enable_shared_from_this<Node> {
  const char* op = "";
  std::uint64_t seq = 0;              // position in execution order
  // Inline room for 3 inputs (x, weight, bias) saves two allocations per recorded op.
  SmallVector<Edge, 3> next;          // one per input
  SmallVector<Shape, 3> input_shapes; // for the printable summary and the gradient shape check
  Shape out_shape;
  DType dtype = DType::f32;
  std::shared_ptr<TensorImpl> saved_output;  // the output's data, if backward needs it
  BackwardFn backward;
  Tensor pending;          // gradient w.r.t. the output, summed over consumers
  bool released = false;   // backward ran without retain_graph: saved tensors are gone
};

// What a backward function may ask for besides the output gradient.
class BackwardContext {
 public:
  BackwardContext(Node& n, bool create_graph) : node_(n), create_graph_(create_graph) {}
  // The op's output (only if the op was recorded with SaveOutput::yes). Under create_graph
  // it carries the node as its grad_fn, so backward expressions using it are differentiable.
  Tensor output() const;
  bool create_graph() const { return create_graph_; }
  // Shape of the op's i-th input, as recorded on the node: a backward that needs only input
  // shapes can read them here instead of capturing copies (a closure that captures nothing
  // needs no heap allocation inside the node's std::function).
  const Shape& input_shape(std::size_t i) const { return node_.input_shapes[i]; }

 private:
  Node& node_;
  bool create_graph_;
};

// ---- grad mode -------------------------------------------------------------------------
bool grad_enabled();
void set_grad_enabled(bool on);

// RAII: nothing is recorded inside its scope (inference, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};
class EnableGradGuard {
 public:
  explicit EnableGradGuard(bool on = true) : prev_(grad_enabled()) { set_grad_enabled(on); }
  ~EnableGradGuard() { set_grad_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

// ---- anomaly mode (like torch.autograd.detect_anomaly) -------------------------------------
// When on (for the calling thread), every recorded op's output and every gradient a backward
// function returns is scanned; the first NaN or Inf throws ng::AnomalyError naming the op,
// its position on the tape (#seq) and the ops that produced its inputs. Off by default; when
// off it costs one thread-local bool test per recorded op and per backward node. When on, it
// reads every element once more (debugging only). Ops that are not recorded (no input
// requires grad, NoGradGuard) are not checked.
bool detect_anomaly_enabled();
void set_detect_anomaly(bool on);

// RAII: anomaly mode on (or off) inside its scope.
class AnomalyModeGuard {
 public:
  explicit AnomalyModeGuard(bool on = true) : prev_(detect_anomaly_enabled()) { set_detect_anomaly(on); }
  ~AnomalyModeGuard() { set_detect_anomaly(prev_); }
  AnomalyModeGuard(const AnomalyModeGuard&) = delete;
  AnomalyModeGuard& operator=(const AnomalyModeGuard&) = delete;

 private:
  bool prev_;
};

namespace detail {
// The checks behind anomaly mode (autograd/anomaly.cpp); they throw AnomalyError.
void check_forward_anomaly(const Node& node, const Tensor& out);
void check_backward_anomaly(const Node& node, const Grads& grads);
}  // namespace detail

// ---- recording -------------------------------------------------------------------------
enum class SaveOutput : bool { no = false, yes = true };

// True if an op on these inputs must be recorded (grad mode on and an input requires grad).
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Attach a node to `out` (see the comment at the top). Returns `out`.
// (A span, so that record's initializer_list needs no std::vector copy of its inputs.)
Tensor attach(const char* op, std::span<const Tensor> inputs, Tensor out, BackwardFn fn, SaveOutput save);

// The form ops use: the backward lambda is turned into a node only when needed.
template <class F>
Tensor record(const char* op, std::initializer_list<Tensor> inputs, Tensor out, F&& fn,
              SaveOutput save = SaveOutput::no) {
  if (!needs_grad(inputs)) return out;
  return attach(op, std::span<const Tensor>(inputs.begin(), inputs.size()), std::move(out),
                BackwardFn(std::forward<F>(fn)), save);
}
template <class F>
Tensor record(const char* op, const std::vector<Tensor>& inputs, Tensor out, F&& fn,
              SaveOutput save = SaveOutput::no) {
  if (!needs_grad(inputs)) return out;
  return attach(op, inputs, std::move(out), BackwardFn(std::forward<F>(fn)), save);
}

// ---- running backward ------------------------------------------------------------------
struct BackwardOptions {
  bool retain_graph = false;  // keep the nodes (and their saved tensors) for another backward
  bool create_graph = false;  // record the backward itself (implies retain_graph)
};

// Accumulate d(root)/d(leaf) * grad into every leaf's .grad(). grad defaults to 1 for a
// one-element root; a non-scalar root needs an explicit grad of its shape.
void backward(const Tensor& root, const Tensor& grad = {}, BackwardOptions opt = {});

// Like torch.autograd.grad: returns d(sum_k <outputs[k], grad_outputs[k]>)/d(inputs[i])
// without touching any .grad(). An input the outputs do not depend on gets an undefined
// Tensor if allow_unused, else an AutogradError.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, BackwardOptions opt = {},
                         bool allow_unused = false);

// Called from inside a backward function: runs fn once the outermost backward() (or grad())
// running on this thread has finished its walk, after every gradient has reached its leaf
// (torch's Variable._execution_engine.queue_callback). DistributedDataParallel averages the
// gradients across processes this way. If the backward throws, queued callbacks are dropped.
// Outside a backward: AutogradError.
void queue_callback(std::function<void()> fn);

// ---- inspecting the tape ---------------------------------------------------------------
struct TapeEntry {
  std::uint64_t seq;
  std::string op;
  std::vector<Shape> input_shapes;
  Shape output_shape;
  DType dtype;
};
// The live recorded ops of this thread, oldest first.
std::vector<TapeEntry> tape_entries();
// Number of live nodes on this thread's tape (after dropping expired ones).
std::size_t tape_size();
// A printable listing, one op per line: "#3  mul  [2, 3] x [2, 3] -> [2, 3]  float32".
std::string tape_summary();
// Number of Storage buffers alive in the process (for memory-baseline tests).
std::int64_t live_storage_count();

}  // namespace ng
