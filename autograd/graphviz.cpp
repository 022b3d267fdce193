#include "autograd/graphviz.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "autograd/error.h"
#include "autograd/tape.h"

namespace ng {

namespace {

std::string node_id(const void* p) { return fmt::format("n{}", reinterpret_cast<std::uintptr_t>(p)); }

// Calls op(node) for every node reachable from root (once each), leaf(node, input index, impl)
// for every edge into a leaf that requires grad, and constant(node, input index) for inputs
// that need no gradient.
void walk(const Tensor& root, const std::function<void(const Node&)>& op,
          const std::function<void(const Node&, std::size_t, const TensorImpl*)>& leaf,
          const std::function<void(const Node&, std::size_t)>& constant) {
  std::unordered_set<const void*> seen;
  std::vector<const Node*> stack{root.grad_fn().get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    op(*n);
    for (std::size_t i = 0; i < n->next.size(); ++i) {
      const Edge& e = n->next[i];
      if (e.node) {
        stack.push_back(e.node.get());
      } else if (e.leaf) {
        leaf(*n, i, e.leaf.get());
      } else {
        constant(*n, i);
      }
    }
  }
}

// Graphviz record labels treat { } | < > as structure: escape them inside a field.
std::string record_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '{' || c == '}' || c == '|' || c == '<' || c == '>' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

// An input of node n that needs no gradient (data, targets): drawn small and grey, with an edge.
std::string constant_input(const Node& n, std::size_t i) {
  const std::string cid = fmt::format("{}_c{}", node_id(&n), i);
  return fmt::format("  {} [label=\"{}\", shape=plaintext, fontcolor=gray];\n  {} -> {} [color=gray];\n", cid,
                     n.input_shapes[i], cid, node_id(&n));
}

}  // namespace

std::string to_dot(const Tensor& root, const TensorNames& names) {
  std::unordered_map<const TensorImpl*, std::string> leaf_name;
  for (const auto& [n, t] : names)
    if (t.defined()) leaf_name[t.impl_ptr().get()] = n;

  std::string out = "digraph tape {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  if (!root.grad_fn()) {
    out += fmt::format("  root [label=\"{} (leaf)\", shape=ellipse, style=bold];\n}}\n", root.shape());
    return out;
  }
  std::unordered_set<const void*> leaves_drawn;
  walk(
      root,
      [&](const Node& n) {
        const bool is_root = &n == root.grad_fn().get();
        out += fmt::format("  {} [label=\"#{} {}\\n{}\", shape=box{}];\n", node_id(&n), n.seq, n.op, n.out_shape,
                           is_root ? ", style=bold" : "");
        for (const Edge& e : n.next)
          if (e.node) out += fmt::format("  {} -> {};\n", node_id(e.node.get()), node_id(&n));
      },
      [&](const Node& n, std::size_t, const TensorImpl* lp) {
        if (leaves_drawn.insert(lp).second) {
          auto it = leaf_name.find(lp);
          if (it != leaf_name.end())
            out += fmt::format("  {} [label=\"{}\\n{}\", shape=ellipse, style=filled, fillcolor=\"#c8e6c9\"];\n",
                               node_id(lp), it->second, lp->shape);
          else
            out += fmt::format("  {} [label=\"leaf\\n{}\", shape=ellipse];\n", node_id(lp), lp->shape);
        }
        out += fmt::format("  {} -> {};\n", node_id(lp), node_id(&n));
      },
      [&](const Node& n, std::size_t i) { out += constant_input(n, i); });
  return out + "}\n";
}

std::string value_summary(const Tensor& t) {
  if (!t.defined()) return "-";
  const std::vector<double> v = t.to_vector();
  if (v.size() == 1) return fmt::format("{:.4g}", v[0]);
  std::string s = fmt::format("{}", t.shape());
  double sum = 0, max_abs = 0;
  for (double e : v) sum += e, max_abs = std::max(max_abs, std::abs(e));
  for (std::size_t i = 0; i < std::min<std::size_t>(v.size(), 4); ++i) s += fmt::format(" {:.3g}", v[i]);
  if (v.size() > 4) s += " ...";
  return s + fmt::format("  mean {:.3g} max|.| {:.3g}", v.empty() ? 0.0 : sum / static_cast<double>(v.size()), max_abs);
}

std::string to_dot_with_values(const Tensor& root, const std::vector<DotLabel>& labels) {
  // Labelled op outputs are found by their node, labelled leaves by their storage.
  std::unordered_map<const void*, const DotLabel*> label_of;
  for (const DotLabel& l : labels) {
    if (!l.tensor.defined()) continue;
    if (l.tensor.grad_fn()) label_of[l.tensor.grad_fn().get()] = &l;
    else label_of[l.tensor.impl_ptr().get()] = &l;
  }
  const auto record = [](const std::string& title, const DotLabel& l) {
    return fmt::format("{{{} | {} | value {} | grad {}}}", record_escape(l.name), record_escape(title),
                       record_escape(value_summary(l.tensor)), record_escape(value_summary(l.grad)));
  };
  std::string out = "digraph tape {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  if (!root.grad_fn()) return out + "}\n";
  std::unordered_set<const void*> leaves_drawn;
  walk(
      root,
      [&](const Node& n) {
        const std::string title = fmt::format("#{} {} {}", n.seq, n.op, n.out_shape);
        const std::string bold = &n == root.grad_fn().get() ? ", style=bold" : "";
        auto it = label_of.find(&n);
        if (it != label_of.end())
          out += fmt::format("  {} [label=\"{}\", shape=record{}];\n", node_id(&n), record(title, *it->second), bold);
        else
          out += fmt::format("  {} [label=\"{}\", shape=box{}];\n", node_id(&n), title, bold);
        for (const Edge& e : n.next)
          if (e.node) out += fmt::format("  {} -> {};\n", node_id(e.node.get()), node_id(&n));
      },
      [&](const Node& n, std::size_t, const TensorImpl* lp) {
        if (leaves_drawn.insert(lp).second) {
          auto it = label_of.find(lp);
          if (it != label_of.end())
            out += fmt::format("  {} [label=\"{}\", shape=record, style=filled, fillcolor=\"#c8e6c9\"];\n", node_id(lp),
                               record(fmt::format("leaf {}", lp->shape), *it->second));
          else
            out += fmt::format("  {} [label=\"leaf\\n{}\", shape=ellipse];\n", node_id(lp), lp->shape);
        }
        out += fmt::format("  {} -> {};\n", node_id(lp), node_id(&n));
      },
      [&](const Node& n, std::size_t i) { out += constant_input(n, i); });
  return out + "}\n";
}

bool write_graph(const std::string& dot, const std::string& stem) {
  const std::string dot_path = stem + ".dot", svg_path = stem + ".svg";
  {
    std::ofstream f(dot_path);
    f << dot;
    if (!f) fail<IOError>("write_graph: cannot write {}", dot_path);
  }
  if (std::system("command -v dot >/dev/null 2>&1") != 0) return false;
  const std::string cmd = fmt::format("dot -Tsvg '{}' -o '{}'", dot_path, svg_path);
  return std::system(cmd.c_str()) == 0;
}

}  // namespace ng
