// Module::load_state_dict with PyTorch's rules (layers/load_state_dict.cpp): dtype conversion
// on copy, strict and non-strict loading with the incompatible keys returned, shape mismatches
// always errors, BatchNorm's num_batches_tracked from older checkpoints, prefixes (the hint and
// the options), and a failed load leaving the model untouched.
#include <cstring>

#include "layers/batch_norm.h"
#include "layers/linear.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::nn;

namespace {
// Linear(3, 4) -> BatchNorm1d(4) -> Linear(4, 2); keys 0.weight, 0.bias, 1.weight, 1.bias,
// 1.running_mean, 1.running_var, 1.num_batches_tracked, 2.weight, 2.bias.
std::shared_ptr<Sequential> net(std::uint64_t seed, DType dt = DType::f32) {
  Generator g(seed);
  auto m = std::make_shared<Sequential>(std::make_shared<Linear>(3, 4, true, &g, dt),
                                        std::make_shared<BatchNorm1d>(BatchNormOptions(4).dtype(dt)),
                                        std::make_shared<Linear>(4, 2, true, &g, dt));
  NoGradGuard ng;
  auto* bn = dynamic_cast<BatchNorm1d*>(&(*m)[1]);
  bn->running_mean.copy_(randn({4}, dt, &g));
  bn->num_batches_tracked.fill_(static_cast<double>(seed));
  return m;
}
// Every value of the state dict, as doubles (for "unchanged" checks).
std::vector<std::vector<double>> snapshot(const Module& m) {
  std::vector<std::vector<double>> out;
  for (const auto& [k, t] : m.state_dict()) out.push_back(t.to_vector());
  return out;
}
Tensor& entry(NamedTensors& sd, const std::string& key) {
  for (auto& [k, t] : sd)
    if (k == key) return t;
  FAIL("no key " << key);
  throw 0;
}
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ValueError& e) {
    return e.what();
  }
  FAIL("expected a ValueError");
  return {};
}
}  // namespace

TEST_CASE("load_state_dict: float64 values load into a float32 model rounded, as PyTorch's copy_") {
  auto src = net(1, DType::f64), dst = net(2);
  const auto keys = dst->load_state_dict(src->state_dict());
  CHECK(keys.empty());
  CHECK(keys.to_string() == "<All keys matched successfully>");
  const auto a = src->state_dict(), b = dst->state_dict();
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].first);
    CHECK(b[i].second.dtype() == (a[i].first == "1.num_batches_tracked" ? DType::i64 : DType::f32));
    const auto va = a[i].second.to_vector(), vb = b[i].second.to_vector();
    for (std::size_t j = 0; j < va.size(); ++j) CHECK(vb[j] == static_cast<double>(static_cast<float>(va[j])));
  }
  // The loaded model owns its values: changing the source afterwards changes nothing.
  NoGradGuard ng;
  src->state_dict()[0].second.fill_(7.0);
  CHECK(dst->state_dict()[0].second.to_vector() != src->state_dict()[0].second.to_vector());
  // And float32 into float64 is exact; int64 values into a float parameter convert too.
  auto wide = net(3, DType::f64);
  NamedTensors sd = dst->state_dict();
  entry(sd, "2.bias") = from_vector(std::vector<std::int64_t>{-3, 5}, {2});
  wide->load_state_dict(sd);
  CHECK(wide->state_dict()[0].second.to_vector() == dst->state_dict()[0].second.to_vector());
  CHECK(wide->state_dict().back().second.to_vector() == std::vector<double>{-3, 5});
}

TEST_CASE("load_state_dict: strict=false loads what matches and returns the missing and unexpected keys") {
  auto src = net(1), dst = net(2);
  NamedTensors sd = src->state_dict();
  sd.erase(sd.begin() + 7, sd.end());  // drop 2.weight, 2.bias
  sd.emplace_back("head.weight", zeros({1}));
  sd.emplace_back("extra", zeros({}));
  const auto before = dst->state_dict()[7].second.to_vector();
  const IncompatibleKeys keys = dst->load_state_dict(sd, /*strict=*/false);
  CHECK(keys.missing_keys == std::vector<std::string>{"2.weight", "2.bias"});
  CHECK(keys.unexpected_keys == std::vector<std::string>{"head.weight", "extra"});
  CHECK(keys.to_string() == "IncompatibleKeys(missing_keys=[2.weight, 2.bias], unexpected_keys=[head.weight, extra])");
  CHECK(dst->state_dict()[0].second.to_vector() == src->state_dict()[0].second.to_vector());
  CHECK(dst->state_dict()[7].second.to_vector() == before);  // missing: left as it was

  // strict=true: the same state dict is one error naming both lists; nothing loaded.
  auto fresh = net(4);
  const auto untouched = snapshot(*fresh);
  const std::string msg = message_of([&] { fresh->load_state_dict(sd); });
  CHECK(msg.find("Sequential.load_state_dict: the state dict does not fit the model; nothing was loaded") == 0);
  CHECK(msg.find("missing keys (2): '2.weight', '2.bias'") != std::string::npos);
  CHECK(msg.find("unexpected keys (2): 'head.weight', 'extra'") != std::string::npos);
  CHECK(msg.find("strict=false loads the keys that match") != std::string::npos);
  CHECK(snapshot(*fresh) == untouched);
}

TEST_CASE("load_state_dict: shape mismatches are errors with strict=false too, each one named") {
  auto dst = net(2);
  NamedTensors sd = net(1)->state_dict();
  entry(sd, "0.weight") = zeros({5, 3});
  entry(sd, "1.running_var") = zeros({4, 1});
  const auto untouched = snapshot(*dst);
  for (bool strict : {true, false}) {
    CAPTURE(strict);
    const std::string msg = message_of([&] { dst->load_state_dict(sd, strict); });
    CHECK(msg.find("shape mismatch for '0.weight': [5, 3] in the state dict vs [4, 3] in the model") !=
          std::string::npos);
    CHECK(msg.find("shape mismatch for '1.running_var': [4, 1] in the state dict vs [4] in the model") !=
          std::string::npos);
    CHECK(snapshot(*dst) == untouched);
  }
}

TEST_CASE("load_state_dict: BatchNorm num_batches_tracked missing loads 0, float loads as int64") {
  auto dst = net(2);
  NamedTensors sd = net(1)->state_dict();
  sd.erase(sd.begin() + 6);  // 1.num_batches_tracked, absent from checkpoints before PyTorch 0.4.1
  auto* bn = dynamic_cast<BatchNorm1d*>(&(*dst)[1]);
  REQUIRE(bn->num_batches_tracked.data<std::int64_t>()[0] == 2);
  CHECK(dst->load_state_dict(sd).empty());  // strict: not a missing key
  CHECK(bn->num_batches_tracked.data<std::int64_t>()[0] == 0);
  CHECK(bn->num_batches_tracked.dtype() == DType::i64);

  sd.emplace_back("1.num_batches_tracked", scalar(12.0, DType::f64));
  dst->load_state_dict(sd);
  CHECK(bn->num_batches_tracked.data<std::int64_t>()[0] == 12);

  // Not a whole number: an error naming the key and the value; nothing loaded (the failing
  // key comes after every other in the state dict, so a non-atomic load would show).
  auto other = net(5);
  const auto untouched = snapshot(*other);
  sd.back().second = scalar(2.5, DType::f64);
  const std::string msg = message_of([&] { other->load_state_dict(sd); });
  CHECK(
      msg.find("'1.num_batches_tracked': float64 value 2.5 (element 0) is not a whole number for the model's int64") !=
      std::string::npos);
  CHECK(snapshot(*other) == untouched);
  sd.back().second = scalar(NAN, DType::f32);
  CHECK_THROWS_WITH_AS(other->load_state_dict(sd), doctest::Contains("value nan"), ValueError);

  // Without running statistics there is no num_batches_tracked to fill.
  BatchNorm1d plain(BatchNormOptions(4).track_running_stats(false));
  CHECK(plain.load_state_dict({{"weight", ones({4})}, {"bias", zeros({4})}}).empty());
}

TEST_CASE("load_state_dict: mismatches that differ by a prefix get a hint, and LoadOptions change prefixes") {
  auto src = net(1), dst = net(2);
  // A checkpoint of a wrapper holding the model as "net." (46 keys in the report).
  const NamedTensors wrapped = add_prefix(src->state_dict(), "net.");
  CHECK(wrapped[0].first == "net.0.weight");
  const std::string msg = message_of([&] { dst->load_state_dict(wrapped); });
  CHECK(msg.find("hint: 9 of the 9 unexpected keys are the model's keys without the prefix 'net.': load with "
                 "LoadOptions{.strip_prefix = \"net.\"} (or nn::strip_prefix / nn::add_prefix on the state dict)") !=
        std::string::npos);
  CHECK(dst->load_state_dict(wrapped, LoadOptions{.strip_prefix = "net."}).empty());
  CHECK(snapshot(*dst) == snapshot(*src));
  CHECK(dst->load_state_dict(strip_prefix(wrapped, "net.")).empty());

  // The other way: a bare model's keys loaded into a wrapper that holds it as "body.".
  Sequential outer;
  outer.push_back(net(3));
  const std::string msg2 = message_of([&] { outer.load_state_dict(src->state_dict()); });
  CHECK(msg2.find("without the prefix") == std::string::npos);
  CHECK(msg2.find("the model's keys with the prefix '0.' added: load with LoadOptions{.add_prefix = \"0.\"}") !=
        std::string::npos);
  CHECK(outer.load_state_dict(src->state_dict(), LoadOptions{.add_prefix = "0."}).empty());
  // Replacing one prefix by another.
  const std::string msg3 = message_of([&] { outer.load_state_dict(wrapped); });
  CHECK(msg3.find(
            "with 'net.' replaced by '0.': load with LoadOptions{.strip_prefix = \"net.\", .add_prefix = \"0.\"}") !=
        std::string::npos);
  CHECK(outer.load_state_dict(wrapped, LoadOptions{.strip_prefix = "net.", .add_prefix = "0."}).empty());
  // No hint when nothing would match.
  CHECK(message_of([&] { dst->load_state_dict({{"w", zeros({1})}}); }).find("hint") == std::string::npos);
  // strip_prefix keeps keys without the prefix; two keys that become one are an error.
  const NamedTensors mixed = strip_prefix({{"net.a", zeros({1})}, {"b", zeros({1})}}, "net.");
  CHECK(mixed[0].first == "a");
  CHECK(mixed[1].first == "b");
  CHECK_THROWS_WITH_AS(dst->load_state_dict({{"net.0.bias", zeros({4})}, {"0.bias", zeros({4})}},
                                            LoadOptions{.strict = false, .strip_prefix = "net."}),
                       doctest::Contains("duplicate key '0.bias'"), ValueError);
}
