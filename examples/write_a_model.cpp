// Writing and training your own model, the program behind docs/modules.md: a custom Module
// built from nn::Sequential and layers, trained with SGD and a cosine schedule, evaluated in
// eval() mode, saved and loaded (strictly, leniently, with a prefix), and its gradients
// checked in float64 with nn::gradcheck. Every code block of docs/modules.md is a piece of
// this file (tests/test_modules_doc.cpp checks that), and CTest runs it (exit code 0 = every
// step did what the guide says). Synthetic data: it runs in a second.
#include <fmt/core.h>

#include <cstdio>
#include <memory>
#include <string>

#include "autograd/ops.h"
#include "io/data_loader.h"
#include "io/safetensors.h"
#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/dropout.h"
#include "layers/linear.h"
#include "optim/schedule.h"
#include "optim/sgd.h"

using namespace ng;

// [guide:module]
// A classifier: Linear -> BatchNorm1d -> ReLU, then Dropout and a Linear head.
class Classifier : public nn::Module {
 public:
  Classifier(std::int64_t in, std::int64_t hidden, std::int64_t classes, Generator* gen = nullptr) {
    body = register_module(
        "body", std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(in, hidden, true, gen),
                                                 std::make_shared<nn::BatchNorm1d>(nn::BatchNormOptions(hidden)),
                                                 std::make_shared<nn::ReLU>()));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(0.1, gen));
    head = register_module("head", std::make_shared<nn::Linear>(hidden, classes, true, gen));
  }
  Tensor forward(const Tensor& x) override { return head->forward(dropout->forward(body->forward(x))); }
  std::string type_name() const override { return "Classifier"; }

  std::shared_ptr<nn::Sequential> body;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Linear> head;
};
// [/guide]

namespace {

int failures = 0;
void expect(bool ok, const std::string& what) {
  fmt::print("  [{}] {}\n", ok ? "ok" : "FAILED", what);
  if (!ok) ++failures;
}

// Points in R^4; the label is the argmax of a fixed linear map of tanh(x): 3 classes.
io::TensorDataset make_data(std::int64_t n, std::uint64_t seed) {
  Generator gen(seed), teacher(1234);
  Tensor x = randn({n, 4}, DType::f32, &gen);
  Tensor w = randn({4, 3}, DType::f32, &teacher);
  Tensor y = argmax(matmul(tanh(x), w), 1);
  return {x, y};
}

// [guide:accuracy]
double accuracy(nn::Module& model, const io::TensorDataset& data) {
  model.eval();  // BatchNorm uses its running statistics, Dropout passes through
  NoGradGuard no_grad;
  const Tensor predicted = argmax(model.forward(data.inputs), 1);                 // int64 class indices
  return mean(eq(predicted.to(DType::f64), data.targets.to(DType::f64))).item();  // eq compares floats
}
// [/guide]

}  // namespace

int main() {
  const io::TensorDataset train_set = make_data(600, 1), test_set = make_data(300, 2);
  const std::string file = "write_a_model.safetensors";

  // [guide:print]
  Generator gen(0);
  auto model = std::make_shared<Classifier>(4, 16, 3, &gen);
  fmt::print("{}\n", *model);  // the module tree, as PyTorch prints it
  for (const auto& [name, t] : model->state_dict()) fmt::print("  {} {}\n", name, t.shape());
  // [/guide]
  expect(model->state_dict().size() == 9, "9 state_dict entries, PyTorch's names");

  // [guide:train]
  optim::SGD opt(model->parameters(), {.lr = 0.1, .momentum = 0.9});
  const int epochs = 8;
  optim::CosineAnnealingLR schedule(opt, epochs);  // lr from 0.1 down to 0 over the run
  io::DataLoader loader(train_set, {.batch_size = 32, .shuffle = true, .seed = 7});
  for (int epoch = 0; epoch < epochs; ++epoch) {
    model->train();  // batch statistics in BatchNorm, random masks in Dropout
    double total = 0;
    for (const auto& [x, y] : loader) {
      opt.zero_grad();
      Tensor loss = cross_entropy(model->forward(x), y);
      loss.backward();
      opt.step();
      total += loss.item();
    }
    schedule.step();
    fmt::print("epoch {}  loss {:.4f}  lr {:.4f}  test accuracy {:.3f}\n", epoch, total / loader.num_batches(),
               schedule.get_last_lr()[0], accuracy(*model, test_set));
  }
  // [/guide]
  const double trained = accuracy(*model, test_set);
  expect(trained > 0.85, fmt::format("test accuracy {:.3f} > 0.85 (chance: 0.33)", trained));

  // [guide:save]
  io::save_module(file, *model);  // the state_dict, PyTorch's names, in a safetensors file
  auto restored = std::make_shared<Classifier>(4, 16, 3);
  io::load_module(file, *restored);  // strict: every key present, shapes equal
  // [/guide]
  expect(accuracy(*restored, test_set) == trained, "a saved and loaded model predicts the same");

  // [guide:lenient]
  // A checkpoint whose keys carry a wrapper's prefix ("net.body.0.weight", ...): strip it.
  io::save_safetensors(file, nn::add_prefix(model->state_dict(), "net."));
  auto from_wrapped = std::make_shared<Classifier>(4, 16, 3);
  io::load_module(file, *from_wrapped, {.strip_prefix = "net."});

  // A model with a new head (5 classes): load the body only, and see what was left out.
  auto five_way = std::make_shared<Classifier>(4, 16, 5);
  io::save_module(file, *model);
  nn::NamedTensors body_only;
  for (const auto& [name, t] : model->state_dict())
    if (name.starts_with("body.")) body_only.emplace_back(name, t);
  const nn::IncompatibleKeys keys = five_way->load_state_dict(body_only, /*strict=*/false);
  fmt::print("{}\n", keys.to_string());  // missing_keys=[head.weight, head.bias]
  // [/guide]
  expect(accuracy(*from_wrapped, test_set) == trained, "loaded from a prefixed checkpoint with strip_prefix");
  expect(keys.missing_keys == std::vector<std::string>{"head.weight", "head.bias"} && keys.unexpected_keys.empty(),
         "strict=false returns the missing head");
  bool shape_error = false;
  try {
    io::load_module(file, *five_way, {.strict = false});  // head.weight [3, 16] vs [5, 16]
  } catch (const ValueError& e) {
    shape_error = std::string(e.what()).find("shape mismatch for 'head.weight'") != std::string::npos;
  }
  expect(shape_error, "a shape mismatch is an error even with strict=false");

  // [guide:gradcheck]
  model->to(DType::f64);  // finite differences need float64: convert the module in place
  model->eval();          // no Dropout masks; BatchNorm with its running statistics
  Tensor x = slice(test_set.inputs, 0, 0, 5).to(DType::f64).requires_grad_();  // 5 samples
  const GradcheckReport report = nn::gradcheck(*model, x);
  fmt::print("{}", report);  // one line per parameter, by its state_dict name
  // [/guide]
  expect(report.passed, "nn::gradcheck passes in float64 (eval mode)");
  model->train();  // training mode: batch statistics; gradcheck restores the running stats
  const GradcheckReport in_training = nn::gradcheck(*model->body, x);
  expect(in_training.passed, "nn::gradcheck of the body passes in training mode (batch statistics)");

  std::remove(file.c_str());
  fmt::print("{}\n", failures == 0 ? "every step did what docs/modules.md says" : "SOME STEPS FAILED");
  return failures == 0 ? 0 : 1;
}
