#include "autograd/graphviz.h"

#include <unordered_map>
#include <unordered_set>

#include "autograd/tape.h"

namespace ng {

std::string to_dot(const Tensor& root, const TensorNames& names) {
  std::unordered_map<const TensorImpl*, std::string> leaf_name;
  for (const auto& [n, t] : names)
    if (t.defined()) leaf_name[t.impl_ptr().get()] = n;

  std::string out = "digraph tape {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  if (!root.grad_fn()) {
    out += fmt::format("  root [label=\"{} (leaf)\", shape=ellipse, style=bold];\n}}\n", root.shape());
    return out;
  }
  std::unordered_set<const void*> seen;
  std::vector<const Node*> stack{root.grad_fn().get()};
  auto node_id = [](const void* p) { return fmt::format("n{}", reinterpret_cast<std::uintptr_t>(p)); };
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    const bool is_root = n == root.grad_fn().get();
    out += fmt::format("  {} [label=\"#{} {}\\n{}\", shape=box{}];\n", node_id(n), n->seq, n->op, n->out_shape,
                       is_root ? ", style=bold" : "");
    for (std::size_t i = 0; i < n->next.size(); ++i) {
      const Edge& e = n->next[i];
      if (e.node) {
        out += fmt::format("  {} -> {};\n", node_id(e.node.get()), node_id(n));
        stack.push_back(e.node.get());
      } else if (e.leaf) {
        const void* lp = e.leaf.get();
        if (seen.insert(lp).second) {
          auto it = leaf_name.find(e.leaf.get());
          if (it != leaf_name.end())
            out += fmt::format("  {} [label=\"{}\\n{}\", shape=ellipse, style=filled, fillcolor=\"#c8e6c9\"];\n",
                               node_id(lp), it->second, e.leaf->shape);
          else
            out += fmt::format("  {} [label=\"leaf\\n{}\", shape=ellipse];\n", node_id(lp), e.leaf->shape);
        }
        out += fmt::format("  {} -> {};\n", node_id(lp), node_id(n));
      } else {
        // an input that needs no gradient (data, targets): drawn small and grey
        const std::string cid = fmt::format("{}_c{}", node_id(n), i);
        out += fmt::format("  {} [label=\"{}\", shape=plaintext, fontcolor=gray];\n  {} -> {} [color=gray];\n", cid,
                           n->input_shapes[i], cid, node_id(n));
      }
    }
  }
  return out + "}\n";
}

}  // namespace ng
