#include "autograd/graphviz.h"
#include "tests/helpers.h"

using namespace ng;

TEST_CASE("graphviz: to_dot draws ops, named parameters, plain leaves and constants") {
  Tensor w = test::rnd({3, 2}, 1), x = test::rnd({4, 3}, 2), data = test::rnd({4, 2}, 3, false);
  Tensor loss = mean(mul(tanh(matmul(x, w)), data));
  const std::string dot = to_dot(loss, {{"fc.weight", w}});
  CHECK(dot.rfind("digraph tape {", 0) == 0);
  CHECK(dot.find("matmul") != std::string::npos);
  CHECK(dot.find("tanh") != std::string::npos);
  CHECK(dot.find("mean\\n[]\", shape=box, style=bold") != std::string::npos);  // the root
  CHECK(dot.find("fc.weight\\n[3, 2]") != std::string::npos);                  // a named parameter
  CHECK(dot.find("leaf\\n[4, 3]") != std::string::npos);                       // an unnamed leaf
  CHECK(dot.find("fontcolor=gray") != std::string::npos);                      // data needs no grad
  CHECK(dot.substr(dot.size() - 2) == "}\n");
}

TEST_CASE("graphviz: to_dot_with_values draws labelled nodes with value and gradient summaries") {
  Tensor w = test::rnd({3, 2}, 1), x = test::rnd({4, 3}, 2, false);
  Tensor h = tanh(matmul(x, w));
  Tensor loss = sum(h);
  const auto g = grad({loss}, {w, h}, {}, {.retain_graph = true});
  const std::string dot = to_dot_with_values(loss, {{"w", w, g[0]}, {"h", h, g[1]}, {"loss", loss, {}}});
  CHECK(dot.find("{w | leaf [3, 2] | value [3, 2]") != std::string::npos);  // a leaf record
  CHECK(dot.find("{h | #") != std::string::npos);                              // an op's output, by its node
  CHECK(dot.find("grad [4, 2] 1 1 1 1 ...  mean 1 max\\|.\\| 1") != std::string::npos);  // d sum / d h = 1
  CHECK(dot.find("grad -}") != std::string::npos);                               // no gradient given
  CHECK(dot.find("matmul") != std::string::npos);                                // unlabelled op: a box
}

TEST_CASE("graphviz: value_summary and write_graph") {
  CHECK(value_summary(tensor({2.5}, {}, DType::f64)) == "2.5");
  CHECK(value_summary(tensor({1, 2, 3}, {3}, DType::f64)) == "[3] 1 2 3  mean 2 max|.| 3");
  CHECK(value_summary(Tensor()) == "-");
  const test::TempDir dir("graphviz");
  write_graph("digraph g { a -> b; }\n", dir / "g");
  CHECK(test::read_file(dir / "g.dot") == "digraph g { a -> b; }\n");
  CHECK_THROWS_WITH_AS(write_graph("digraph g {}", dir / "missing/g"), doctest::Contains("write_graph: cannot write"),
                       IOError);
}
