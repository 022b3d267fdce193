// Every layer with parameters takes a dtype for them (PyTorch's dtype= factory argument):
// float64 layers are what nn::gradcheck needs; int64 is refused by name.
#include "layers/batch_norm.h"
#include "layers/conv.h"
#include "layers/embedding.h"
#include "layers/group_norm.h"
#include "layers/layer_norm.h"
#include "layers/linear.h"
#include "layers/rms_norm.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::nn;

TEST_CASE("layers: a dtype option on every layer with parameters, float buffers follow it, counters stay int64") {
  auto check = [](const Module& m, DType want) {
    for (const auto& [name, t] : m.state_dict()) {
      CAPTURE(name);
      CHECK(t.dtype() == (name == "num_batches_tracked" ? DType::i64 : want));
    }
  };
  for (DType d : {DType::f32, DType::f64}) {
    CAPTURE(d);
    check(BatchNorm1d(BatchNormOptions(3).dtype(d)), d);
    check(BatchNorm2d(BatchNormOptions(3).dtype(d)), d);
    check(LayerNorm(LayerNormOptions({4}).dtype(d)), d);
    check(GroupNorm(GroupNormOptions(2, 4).dtype(d)), d);
    check(InstanceNorm2d(InstanceNormOptions(3).affine(true).track_running_stats(true).dtype(d)), d);
    check(RMSNorm(RMSNormOptions({4}).dtype(d)), d);
    check(Linear(2, 3, true, nullptr, d), d);
    check(Conv2d(1, 2, 3, 1, 0, 1, 1, true, nullptr, d), d);
    check(Embedding(5, 2, std::nullopt, nullptr, d), d);
  }
  // A float64 BatchNorm2d runs on float64 input and passes nn::gradcheck without to().
  BatchNorm2d bn(BatchNormOptions(2).dtype(DType::f64));
  CHECK_GRADCHECK(nn::gradcheck(bn, test::rnd({3, 2, 2, 1}, 5)));
  LayerNorm ln(LayerNormOptions({3}).dtype(DType::f64));
  CHECK_GRADCHECK(nn::gradcheck(ln, test::rnd({2, 3}, 6)));

  const char* expect = "dtype must be float32 or float64 (its parameters are trained): got int64";
  CHECK_THROWS_WITH_AS(BatchNorm2d(BatchNormOptions(3).dtype(DType::i64)), doctest::Contains(expect), DTypeError);
  CHECK_THROWS_WITH_AS(LayerNorm(LayerNormOptions({3}).dtype(DType::i64)), doctest::Contains("LayerNorm: dtype must"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(GroupNorm(GroupNormOptions(1, 3).dtype(DType::i64)), doctest::Contains("GroupNorm: dtype"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(InstanceNorm2d(InstanceNormOptions(3).dtype(DType::i64)),
                       doctest::Contains("InstanceNorm2d: dtype"), DTypeError);
  CHECK_THROWS_WITH_AS(RMSNorm(RMSNormOptions({3}).dtype(DType::i64)), doctest::Contains("RMSNorm: dtype"), DTypeError);
  CHECK_THROWS_WITH_AS(Linear(2, 3, true, nullptr, DType::i64), doctest::Contains("Linear: dtype"), DTypeError);
  CHECK_THROWS_WITH_AS(Conv2d(1, 2, 3, 1, 0, 1, 1, true, nullptr, DType::i64), doctest::Contains("Conv2d: dtype"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(Embedding(5, 2, std::nullopt, nullptr, DType::i64), doctest::Contains("Embedding: dtype"),
                       DTypeError);
}
