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
