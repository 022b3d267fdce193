// Module API across the layer families: state_dict keys as PyTorch names them, the printed
// tree, parameter counts, train/eval propagation, load_state_dict.
#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/dropout.h"
#include "layers/flatten.h"
#include "layers/linear.h"
#include "layers/pool.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::nn;

namespace {
std::vector<std::string> keys(const NamedTensors& nt) {
  std::vector<std::string> k;
  for (auto& [n, t] : nt) k.push_back(n);
  return k;
}
std::shared_ptr<Sequential> small_cnn(std::uint64_t seed) {
  Generator g(seed);
  return std::make_shared<Sequential>(std::make_shared<Conv2d>(1, 4, 3, 1, 1, 1, 1, true, &g), std::make_shared<ReLU>(),
                                      std::make_shared<MaxPool2d>(2), std::make_shared<Flatten>(),
                                      std::make_shared<Linear>(4 * 3 * 3, 5, true, &g));
}
}  // namespace

TEST_CASE("Module: state_dict keys match PyTorch's for the same Sequential structure") {
  // torch: nn.Sequential(nn.Conv2d(1,4,3,padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36,5))
  auto net = small_cnn(0);
  CHECK(keys(net->state_dict()) == std::vector<std::string>{"0.weight", "0.bias", "4.weight", "4.bias"});
  // nested: nn.Sequential(features, nn.Dropout(), nn.Linear(5, 2, bias=False))
  Sequential outer(net, std::make_shared<Dropout>(0.5), std::make_shared<Linear>(5, 2, false));
  CHECK(keys(outer.state_dict()) == std::vector<std::string>{"0.0.weight", "0.0.bias", "0.4.weight", "0.4.bias", "2.weight"});
  CHECK(keys(outer.named_parameters()) == keys(outer.state_dict()));
  std::vector<std::string> mods;
  for (auto& [n, m] : outer.named_modules()) mods.push_back(n + ":" + m->type_name());
  CHECK(mods == std::vector<std::string>{":Sequential", "0:Sequential", "0.0:Conv2d", "0.1:ReLU", "0.2:MaxPool2d",
                                         "0.3:Flatten", "0.4:Linear", "1:Dropout", "2:Linear"});
}

TEST_CASE("Module: the printed tree is PyTorch's repr") {
  auto net = small_cnn(0);
  Sequential outer(net, std::make_shared<Dropout>(0.25), std::make_shared<Linear>(5, 2, false));
  const std::string expect =
      "Sequential(\n"
      "  (0): Sequential(\n"
      "    (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
      "    (1): ReLU()\n"
      "    (2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)\n"
      "    (3): Flatten(start_dim=1, end_dim=-1)\n"
      "    (4): Linear(in_features=36, out_features=5, bias=True)\n"
      "  )\n"
      "  (1): Dropout(p=0.25, inplace=False)\n"
      "  (2): Linear(in_features=5, out_features=2, bias=False)\n"
      ")";
  CHECK(outer.repr() == expect);
  CHECK(fmt::format("{}", outer) == expect);
}

TEST_CASE("Module: num_parameters, train/eval reach every child, load_state_dict copies values") {
  auto a = small_cnn(1), b = small_cnn(2);
  CHECK(a->num_parameters() == (4 * 9 + 4) + (36 * 5 + 5));
  Sequential outer(a, std::make_shared<Dropout>(0.5));
  outer.eval();
  for (auto& [n, m] : outer.named_modules()) CHECK_FALSE(m->is_training());
  outer.train();
  for (auto& [n, m] : outer.named_modules()) CHECK(m->is_training());

  Tensor x = randn({2, 1, 6, 6});
  CHECK(a->forward(x).to_vector() != b->forward(x).to_vector());
  b->load_state_dict(a->state_dict());
  CHECK(a->forward(x).to_vector() == b->forward(x).to_vector());
  // a checkpoint from another architecture: one error listing every problem
  Linear other(3, 3);
  CHECK_THROWS_WITH_AS(b->load_state_dict(other.state_dict()), doctest::Contains("unexpected keys (2): 'weight', 'bias'"), ValueError);
  // '0.weight' of the CNN has another shape than the Linear's 'weight': no prefix hint.
  try {
    b->load_state_dict(other.state_dict());
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()).find("hint") == std::string::npos);
  }
}

TEST_CASE("Module: to(float64) converts every layer in place, then a module gradcheck passes") {
  auto net = small_cnn(3);
  Tensor w = net->named_parameters()[0].second;  // a handle held outside sees the change
  net->to(DType::f64);
  CHECK(w.dtype() == DType::f64);
  CHECK(w.requires_grad());
  GradcheckOptions fast;
  fast.fast_mode = true;
  CHECK_GRADCHECK(nn::gradcheck(*net, test::rnd({2, 1, 6, 6}, 4), fast));
}

TEST_CASE("nn::gradcheck: reports name parameters by their state_dict keys, float32 errors name the fix") {
  Generator g(5);
  auto net = std::make_shared<Sequential>(std::make_shared<Linear>(3, 4, true, &g), std::make_shared<ReLU>(),
                                          std::make_shared<Linear>(4, 2, false, &g));
  // A float32 model with a float64 input: the fix is the module, not the input.
  auto r = nn::gradcheck(*net, test::rnd({2, 3}, 1));
  CHECK_FALSE(r.passed);
  CHECK(r.error.find("the Sequential's parameters '0.weight', '0.bias', '2.weight' are float32") == 0);
  CHECK(r.error.find("Fix: net->to(DType::f64) (the module in place)") != std::string::npos);
  CHECK(r.error.find(".to(DType::f64) on the inputs") == std::string::npos);
  CHECK(r.error.find("input 1") == std::string::npos);
  // Both float32.
  r = nn::gradcheck(*net, randn({2, 3}).requires_grad_());
  CHECK(r.error.find("parameters ('0.weight', '0.bias', '2.weight') and the input are float32") != std::string::npos);
  CHECK(r.error.find("Fix: net->to(DType::f64) and pass input.to(DType::f64)") != std::string::npos);
  // Only the input.
  net->to(DType::f64);
  r = nn::gradcheck(*net, randn({2, 3}));
  CHECK(r.error.find("the input is float32") == 0);
  CHECK(r.error.find("Fix: pass input.to(DType::f64)") != std::string::npos);
  GradcheckOptions raise;
  raise.raise = true;
  CHECK_THROWS_WITH_AS(nn::gradcheck(*net, randn({2, 3}), raise), doctest::Contains("the input is float32"),
                       GradcheckError);

  // In float64 it runs; each line of the report names a parameter.
  r = nn::gradcheck(*net, test::rnd({2, 3}, 1));
  CHECK_MESSAGE(r.passed, r.to_string());
  REQUIRE(r.inputs.size() == 4);
  CHECK(r.inputs[0].name == "input");
  CHECK(r.inputs[1].name == "0.weight");
  CHECK(r.inputs[3].name == "2.weight");
  const std::string text = r.to_string();
  CHECK(text.find("  input [2, 3]: ok") != std::string::npos);
  CHECK(text.find("  0.weight [4, 3]: ok") != std::string::npos);
  CHECK(text.find("  2.weight [2, 4]: ok") != std::string::npos);
  CHECK(text.find("d out[") != std::string::npos);
  CHECK(text.find(" / d 0.bias[") != std::string::npos);
  // An input that does not require grad is listed, unchecked, by name.
  r = nn::gradcheck(*net, test::rnd({2, 3}, 1, false));
  CHECK(r.to_string().find("  input [2, 3]: not checked (does not require grad)") != std::string::npos);
}

TEST_CASE("Sequential: a ReLU followed by a MaxPool2d (run as relu_max_pool2d) gives what the children give one by one") {
  auto net = small_cnn(3);
  Generator g(9);
  const Tensor xin = randn({3, 1, 6, 6}, DType::f32, &g);
  Tensor x1 = xin.detach().requires_grad_(), x2 = xin.detach().requires_grad_();
  Tensor y1 = net->forward(x1);
  sum(mul(y1, y1)).backward();
  std::vector<Tensor> grads1;
  for (const auto& p : net->parameters()) grads1.push_back(p.grad().detach().contiguous());
  net->zero_grad();
  Tensor h = x2;
  for (std::size_t i = 0; i < net->size(); ++i) h = (*net)[i].forward(h);  // each child on its own
  sum(mul(h, h)).backward();
  // bit for bit: the same arithmetic, in one op instead of two
  auto same = [](const Tensor& a, const Tensor& b) { return a.to_vector() == b.to_vector(); };
  CHECK(same(y1, h));
  CHECK(same(x1.grad(), x2.grad()));
  std::size_t k = 0;
  for (const auto& p : net->parameters()) CHECK(same(grads1[k++], p.grad()));
}
