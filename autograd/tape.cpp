#include "autograd/tape.h"

#include <algorithm>
#include <unordered_map>

#include "autograd/ops.h"
#include "autograd/pool.h"

namespace ng {

namespace {

thread_local bool t_grad_enabled = true;
thread_local bool t_detect_anomaly = false;

// This thread's tape: weak references to nodes in creation order.
struct Tape {
  std::vector<std::weak_ptr<Node>> nodes;
  std::uint64_t next_seq = 0;
  std::size_t compact_at = 1024;
  int in_backward = 0;  // no compaction while a backward walks the vector
  std::vector<std::function<void()>> callbacks;  // queue_callback: run when the outermost backward ends

  void compact() {
    std::erase_if(nodes, [](const std::weak_ptr<Node>& w) {
      auto n = w.lock();
      return !n || n->released;
    });
    compact_at = std::max<std::size_t>(1024, 2 * nodes.size());
  }
  void push(const std::shared_ptr<Node>& n) {
    if (nodes.size() >= compact_at && in_backward == 0) compact();
    nodes.push_back(n);
  }
};

Tape& tape() {
  thread_local Tape t;
  return t;
}

// True if nothing but the `handles` handles we know of can see t's data: no other handle on
// its header, no other header on its storage, and the storage holds exactly t's elements.
bool sole_owner(const Tensor& t, long handles) {
  return t.impl_ptr().use_count() == handles && t.impl().storage.use_count() == 1 && t.is_contiguous() &&
         t.offset() == 0 &&
         static_cast<std::int64_t>(t.impl().storage->nbytes) == t.numel() * static_cast<std::int64_t>(dtype_size(t.dtype()));
}

// g1 + g2 for gradients reaching the same place along two paths. When nothing is being
// recorded and no one but the caller's `handles` handles can see `acc`, g is added into it
// in place: a tensor used by k ops receives k gradients, and this saves k - 1 new tensors.
Tensor accumulate(const Tensor& acc, const Tensor& g, long handles = 1) {
  if (!acc.defined()) return g;
  if (!grad_enabled() && acc.shape() == g.shape() && acc.dtype() == g.dtype() && sole_owner(acc, handles)) {
    Tensor sum = acc;
    sum.add_(g);
    return sum;
  }
  return add(acc, g);
}

}  // namespace

bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool on) { t_grad_enabled = on; }
bool detect_anomaly_enabled() { return t_detect_anomaly; }
void set_detect_anomaly(bool on) { t_detect_anomaly = on; }

Tensor BackwardContext::output() const {
  if (!node_.saved_output)
    fail<AutogradError>("{}: backward asked for the output, but the op was recorded without SaveOutput::yes",
                        node_.op);
  Tensor out(detail::make_pooled<TensorImpl>(*node_.saved_output));
  if (create_graph_) {
    // Differentiable view of the output: it carries the node that made it.
    out.impl().requires_grad = true;
    out.impl().grad_fn = node_.shared_from_this();
  }
  return out;
}

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!t_grad_enabled) return false;
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}
bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor attach(const char* op, std::span<const Tensor> inputs, Tensor out, BackwardFn fn, SaveOutput save) {
  auto node = detail::make_pooled<Node>();  // pooled (autograd/pool.h): one per recorded op
  Tape& tp = tape();
  node->op = op;
  node->seq = tp.next_seq++;
  node->next.resize(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.defined()) {
      node->input_shapes.emplace_back();
      continue;
    }
    node->input_shapes.push_back(t.shape());
    if (!t.requires_grad()) continue;
    if (t.grad_fn()) node->next[i].node = t.grad_fn();
    else node->next[i].leaf = t.impl_ptr();
  }
  node->out_shape = out.shape();
  node->dtype = out.dtype();
  if (t_detect_anomaly) detail::check_forward_anomaly(*node, out);  // throws on NaN / Inf
  node->backward = std::move(fn);
  if (save == SaveOutput::yes) {
    // A copy of the output's header (shares storage, no grad_fn): no reference cycle.
    node->saved_output = detail::make_pooled<TensorImpl>(out.impl());
    node->saved_output->grad_fn.reset();
    node->saved_output->grad.reset();
    node->saved_output->requires_grad = false;
  }
  out.impl().requires_grad = true;
  out.impl().grad_fn = node;
  tp.push(node);
  return out;
}

namespace {

// Shared walk of backward() and grad(). `roots` with their gradients seed the walk.
// If `capture` is non-null, gradients reaching the listed impls/nodes are stored there
// instead of in .grad().
struct Capture {
  std::unordered_map<const TensorImpl*, std::size_t> leaf_index;
  std::unordered_map<const Node*, std::size_t> node_index;
  std::vector<Tensor> grads;
};

void check_grad_shape(const Tensor& root, const Tensor& g, const char* who) {
  if (g.shape() != root.shape())
    fail<ShapeError>("{}: gradient shape {} does not match output shape {}", who, g.shape(), root.shape());
  if (g.dtype() != root.dtype())
    fail<DTypeError>("{}: gradient dtype {} does not match output dtype {}", who, g.dtype(), root.dtype());
}

// Store a gradient in a leaf's .grad (accumulating). The stored tensor is contiguous and owns
// its storage, so later in-place updates (clipping, optimizers) cannot touch another tensor.
// g is stolen only if nothing else refers to it: one handle (the caller's) on its header and
// one header on its storage. Otherwise (a gradient the user passed in, one tensor sent to two
// inputs, a view of another tensor) it is copied.
void accumulate_leaf(TensorImpl& leaf, const Tensor& g, bool create_graph) {
  Tensor cur(leaf.grad);
  Tensor next;
  if (cur.defined()) {
    next = accumulate(cur, g, /*handles: leaf.grad and cur*/ 2);
  } else if (create_graph) {
    next = g;
  } else {
    const bool owned = g.is_contiguous() && g.impl_ptr().use_count() == 1 && g.impl().storage.use_count() == 1 &&
                       g.offset() == 0 &&
                       static_cast<std::int64_t>(g.impl().storage->nbytes) == g.numel() * static_cast<std::int64_t>(dtype_size(g.dtype()));
    next = owned ? g.detach() : g.detach().clone();
  }
  leaf.grad = next.impl_ptr();
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads, BackwardOptions opt,
                  Capture* capture) {
  if (opt.create_graph) opt.retain_graph = true;
  Tape& tp = tape();
  EnableGradGuard mode(opt.create_graph);  // backward ops are recorded only under create_graph

  std::uint64_t max_seq = 0;
  bool any_node = false;
  for (std::size_t r = 0; r < roots.size(); ++r) {
    const Tensor& root = roots[r];
    const Tensor& g = root_grads[r];
    if (!root.requires_grad())
      fail<AutogradError>("backward: tensor {} does not require grad and has no grad_fn (did you compute it "
                          "under NoGradGuard, or from tensors without requires_grad?)",
                          root.shape());
    if (root.grad_fn()) {
      Node& n = *root.grad_fn();
      if (n.released)
        fail<AutogradError>("backward: trying to backward through op '{}' a second time; its saved tensors were "
                            "freed. Pass retain_graph=true to the first backward.",
                            n.op);
      n.pending = accumulate(n.pending, g);
      max_seq = std::max(max_seq, n.seq);
      any_node = true;
    } else if (capture) {
      auto it = capture->leaf_index.find(root.impl_ptr().get());
      if (it != capture->leaf_index.end()) capture->grads[it->second] = accumulate(capture->grads[it->second], g);
    } else {
      accumulate_leaf(root.impl(), g, opt.create_graph);
    }
  }
  if (!any_node) return;

  ++tp.in_backward;
  struct Exit {
    Tape& tp;
    bool compact;
    ~Exit() {
      --tp.in_backward;
      if (compact && tp.in_backward == 0) tp.compact();
    }
  } exit{tp, !opt.retain_graph};
  // Callbacks queued by backward functions run after the outermost walk completes; if it
  // throws, they are dropped (the gradients they would have finished are incomplete).
  struct Callbacks {
    Tape& tp;
    bool outermost;
    ~Callbacks() {
      if (outermost) tp.callbacks.clear();
    }
    void run() {
      if (!outermost) return;
      auto fns = std::move(tp.callbacks);
      tp.callbacks.clear();
      for (auto& f : fns) f();
    }
  } callbacks{tp, tp.in_backward == 1};

  // Reverse walk. Nodes appended during the walk (create_graph) lie beyond `end` and are skipped.
  const std::size_t end = tp.nodes.size();
  for (std::size_t k = end; k-- > 0;) {
    std::shared_ptr<Node> node = tp.nodes[k].lock();
    if (!node || node->seq > max_seq || !node->pending.defined()) continue;
    if (node->released)
      fail<AutogradError>("backward: trying to backward through op '{}' a second time; pass retain_graph=true "
                          "to the first backward",
                          node->op);
    Tensor g = std::move(node->pending);
    node->pending = Tensor();
    if (capture) {
      auto it = capture->node_index.find(node.get());
      if (it != capture->node_index.end()) capture->grads[it->second] = accumulate(capture->grads[it->second], g);
    }
    BackwardContext ctx(*node, opt.create_graph);
    Grads grads = node->backward(ctx, g);
    if (t_detect_anomaly) detail::check_backward_anomaly(*node, grads);  // throws on NaN / Inf
    g = Tensor();  // drop our handle, so that a gradient passed straight through can be stolen
    if (grads.size() != node->next.size())
      fail<AutogradError>("{}: backward returned {} gradients for {} inputs", node->op, grads.size(), node->next.size());
    for (std::size_t i = 0; i < grads.size(); ++i) {
      const Edge& e = node->next[i];
      Tensor& gi = grads[i];
      if (!gi.defined() || (!e.node && !e.leaf)) continue;
      if (gi.shape() != node->input_shapes[i])
        fail<AutogradError>("{}: backward produced a gradient of shape {} for input {} of shape {}", node->op,
                            gi.shape(), i, node->input_shapes[i]);
      if (e.node) {
        // A released node is no longer on the tape (compaction drops it), so the walk would
        // never reach it and this gradient would be lost without a word: refuse here.
        if (e.node->released)
          fail<AutogradError>("backward: trying to backward through op '{}' a second time; its saved tensors "
                              "were freed. Pass retain_graph=true to the first backward.",
                              e.node->op);
        e.node->pending = accumulate(e.node->pending, gi);
      } else if (capture) {
        auto it = capture->leaf_index.find(e.leaf.get());
        if (it != capture->leaf_index.end()) capture->grads[it->second] = accumulate(capture->grads[it->second], gi);
      } else {
        accumulate_leaf(*e.leaf, gi, opt.create_graph);
      }
    }
    if (!opt.retain_graph) {
      node->backward = nullptr;  // frees everything the backward captured
      node->saved_output.reset();
      node->released = true;
    }
  }
  callbacks.run();
}

Tensor default_root_grad(const Tensor& root, const char* who) {
  if (root.numel() != 1)
    fail<AutogradError>("{}: grad can be implicitly created only for one-element outputs; got shape {}; pass "
                        "a gradient of that shape",
                        who, root.shape());
  return ones(root.shape(), root.dtype());
}

}  // namespace

void queue_callback(std::function<void()> fn) {
  Tape& tp = tape();
  if (tp.in_backward == 0)
    fail<AutogradError>("queue_callback: called outside a backward pass (only backward functions may queue callbacks)");
  tp.callbacks.push_back(std::move(fn));
}

void backward(const Tensor& root, const Tensor& grad, BackwardOptions opt) {
  Tensor g = grad.defined() ? grad : default_root_grad(root, "backward");
  check_grad_shape(root, g, "backward");
  run_backward({root}, {g}, opt, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, BackwardOptions opt, bool allow_unused) {
  if (!grad_outputs.empty() && grad_outputs.size() != outputs.size())
    fail<ValueError>("grad: {} grad_outputs for {} outputs", grad_outputs.size(), outputs.size());
  Capture cap;
  cap.grads.resize(inputs.size());
  // The same tensor (or two handles of one node) may be listed twice: the gradient is captured
  // once, under the first occurrence, and copied to the others (torch.autograd.grad returns the
  // full gradient for each occurrence).
  std::vector<std::size_t> first(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].requires_grad())
      fail<AutogradError>("grad: input {} (shape {}) does not require grad", i, inputs[i].shape());
    first[i] = inputs[i].grad_fn() ? cap.node_index.try_emplace(inputs[i].grad_fn().get(), i).first->second
                                   : cap.leaf_index.try_emplace(inputs[i].impl_ptr().get(), i).first->second;
  }
  std::vector<Tensor> gs;
  for (std::size_t r = 0; r < outputs.size(); ++r) {
    Tensor g = grad_outputs.empty() || !grad_outputs[r].defined() ? default_root_grad(outputs[r], "grad")
                                                                   : grad_outputs[r];
    check_grad_shape(outputs[r], g, "grad");
    gs.push_back(g);
  }
  run_backward(outputs, gs, opt, &cap);
  for (std::size_t i = 0; i < inputs.size(); ++i) cap.grads[i] = cap.grads[first[i]];
  for (std::size_t i = 0; i < inputs.size(); ++i)
    if (!cap.grads[i].defined() && !allow_unused)
      fail<AutogradError>("grad: input {} (shape {}) was not used to compute the outputs; pass allow_unused=true",
                          i, inputs[i].shape());
  return cap.grads;
}

std::vector<TapeEntry> tape_entries() {
  Tape& tp = tape();
  if (tp.in_backward == 0) tp.compact();
  std::vector<TapeEntry> out;
  for (auto& w : tp.nodes)
    if (auto n = w.lock(); n && !n->released)
      out.push_back({n->seq, n->op, {n->input_shapes.begin(), n->input_shapes.end()}, n->out_shape, n->dtype});
  return out;
}

std::size_t tape_size() { return tape_entries().size(); }

std::string tape_summary() {
  std::string s;
  for (const auto& e : tape_entries()) {
    std::string ins;
    for (std::size_t i = 0; i < e.input_shapes.size(); ++i)
      ins += (i ? " x " : "") + fmt::format("{}", e.input_shapes[i]);
    s += fmt::format("#{:<4} {:<14} {} -> {}  {}\n", e.seq, e.op, ins, e.output_shape, e.dtype);
  }
  return s;
}

}  // namespace ng
