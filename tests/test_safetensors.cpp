// safetensors checkpoints: bit-exact round trips, a file composed byte by byte, every kind
// of corruption, mismatched models, training checkpoints, and atomic replacement.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "io/data_loader.h"
#include "io/float16.h"
#include "io/safetensors.h"
#include "layers/module.h"
#include "tests/helpers.h"

namespace fs = std::filesystem;
using ng::io::load_safetensors;
using ng::io::NamedTensors;
using ng::io::save_safetensors;

namespace {

using test::TempDir;

std::string read_bytes(const std::string& path) { return test::read_file(path); }
void write_bytes(const std::string& path, const std::string& bytes) { test::write_file(path, bytes); }
std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}
template <class T> std::string raw(std::initializer_list<T> values) {
  std::string s;
  for (T v : values) s.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return s;
}
// A safetensors file from a header text and a data section.
std::string st_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

bool bit_equal(const ng::Tensor& a, const ng::Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const ng::Tensor ca = a.contiguous(), cb = b.contiguous();
  const std::size_t n = static_cast<std::size_t>(a.numel()) * ng::dtype_size(a.dtype());
  if (n == 0) return true;
  const auto* pa = static_cast<const char*>(ca.impl().storage->data) + static_cast<std::size_t>(ca.offset()) * ng::dtype_size(a.dtype());
  const auto* pb = static_cast<const char*>(cb.impl().storage->data) + static_cast<std::size_t>(cb.offset()) * ng::dtype_size(b.dtype());
  return std::memcmp(pa, pb, n) == 0;
}

// A toy layer: a parameter pair and an int64 buffer, like a norm layer's num_batches_tracked.
struct Toy : ng::nn::Module {
  Toy(std::int64_t in, std::int64_t out, std::uint64_t seed) {
    ng::Generator g(seed);
    register_parameter("weight", ng::randn({out, in}, ng::DType::f32, &g));
    register_parameter("bias", ng::randn({out}, ng::DType::f32, &g));
    register_buffer("num_batches_tracked", ng::full({}, static_cast<double>(seed), ng::DType::i64));
  }
  ng::Tensor forward(const ng::Tensor& x) override { return x; }
  std::string type_name() const override { return "Toy"; }
};

std::shared_ptr<ng::nn::Sequential> two_toys(std::uint64_t seed, std::int64_t hidden = 5) {
  return std::make_shared<ng::nn::Sequential>(std::make_shared<Toy>(3, hidden, seed),
                                              std::make_shared<Toy>(hidden, 2, seed + 1));
}

}  // namespace

TEST_CASE("safetensors: round trip is bit-exact for f32, f64, i64, 0-d, empty and strided tensors") {
  TempDir dir("st_roundtrip");
  ng::Generator g(5);
  const ng::Tensor f32 = ng::randn({3, 5}, ng::DType::f32, &g);
  const ng::Tensor f64 = ng::randn({7}, ng::DType::f64, &g);
  const ng::Tensor i64 = ng::from_vector(std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min(), -1, 0,
                                                                    1, std::numeric_limits<std::int64_t>::max(), 42},
                                         {2, 3});
  const ng::Tensor scalar = ng::scalar(-0.0, ng::DType::f64);
  const ng::Tensor empty = ng::zeros({0, 3});
  const ng::Tensor strided = ng::randn({5, 3}, ng::DType::f64, &g).t();  // [3, 5], not contiguous
  f32.data<float>()[4] = std::numeric_limits<float>::denorm_min();
  f64.data<double>()[2] = std::numeric_limits<double>::quiet_NaN();
  const NamedTensors tensors = {{"z.f32", f32}, {"a.f64", f64},     {"m.i64", i64},
                                {"scalar", scalar}, {"empty", empty}, {"strided", strided}};
  const ng::io::Metadata meta = {{"epoch", "3"}, {"note", "ünïcode \"quoted\""}};
  save_safetensors(dir / "t.safetensors", tensors, meta);

  const auto back = load_safetensors(dir / "t.safetensors");
  REQUIRE(back.tensors.size() == tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    CAPTURE(tensors[i].first);
    CHECK(back.tensors[i].first == tensors[i].first);  // saved order is kept
    CHECK(bit_equal(back.tensors[i].second, tensors[i].second));
  }
  CHECK(back.tensors[3].second.shape() == ng::Shape{});
  CHECK(std::signbit(back.tensors[3].second.item()));
  CHECK(back.metadata == meta);

  // The layout: 8-byte length, header padded to a multiple of 8, then the packed data.
  const std::string bytes = read_bytes(dir / "t.safetensors");
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  const std::string header = bytes.substr(8, n);
  CHECK(header.find("\"z.f32\":{\"dtype\":\"F32\",\"shape\":[3,5],\"data_offsets\":[0,60]}") != std::string::npos);
  CHECK(header.find("\"scalar\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[164,172]}") != std::string::npos);
  CHECK(header.find("\"empty\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[172,172]}") != std::string::npos);
  CHECK(bytes.size() == 8 + n + 60 + 56 + 48 + 8 + 0 + 120);
  CHECK(std::memcmp(bytes.data() + 8 + n, f32.data<float>(), 60) == 0);
}

TEST_CASE("safetensors: a file composed byte by byte loads with the expected values") {
  TempDir dir("st_handmade");
  // Entries listed out of order in the JSON; the data order decides the tensor order.
  const std::string header =
      R"({"b":{"dtype":"I64","shape":[],"data_offsets":[8,16]},)"
      R"("__metadata__":{"format":"pt","k":"v"},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("c":{"dtype":"F64","shape":[1,2],"data_offsets":[16,32]},)"
      R"("e":{"dtype":"F64","shape":[2,0],"data_offsets":[32,32]}})";
  const std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  write_bytes(dir / "h.safetensors",
              st_file(padded, raw<float>({1.5f, -2.0f}) + raw<std::int64_t>({-7}) + raw<double>({0.1, 1e300})));
  const auto c = load_safetensors(dir / "h.safetensors");
  REQUIRE(c.tensors.size() == 4);
  CHECK(c.tensors[0].first == "a");
  CHECK(c.tensors[0].second.dtype() == ng::DType::f32);
  CHECK(c.tensors[0].second.to_vector() == std::vector<double>{1.5, -2.0});
  CHECK(c.tensors[1].first == "b");
  CHECK(c.tensors[1].second.shape() == ng::Shape{});
  CHECK(c.tensors[1].second.data<std::int64_t>()[0] == -7);
  CHECK(c.tensors[2].first == "c");
  CHECK(c.tensors[2].second.shape() == ng::Shape{1, 2});
  CHECK(c.tensors[2].second.to_vector() == std::vector<double>{0.1, 1e300});
  CHECK(c.tensors[3].second.shape() == ng::Shape{2, 0});
  CHECK(c.metadata == ng::io::Metadata{{"format", "pt"}, {"k", "v"}});

  // Unpadded headers and no metadata are fine too.
  write_bytes(dir / "u.safetensors",
              st_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", raw<float>({3.0f})));
  CHECK(load_safetensors(dir / "u.safetensors").tensors[0].second.item() == 3.0);
}

TEST_CASE("safetensors: corrupt files are IOErrors naming the problem") {
  TempDir dir("st_corrupt");
  const std::string good_header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string good_data = raw<float>({1.0f, 2.0f});
  auto check = [&](const std::string& name, const std::string& bytes, const std::string& expect) {
    CAPTURE(name);
    write_bytes(dir / name, bytes);
    CHECK_THROWS_WITH_AS(load_safetensors(dir / name), doctest::Contains(expect.c_str()), ng::IOError);
  };
  CHECK_THROWS_WITH_AS(load_safetensors(dir / "missing"), doctest::Contains("no such file"), ng::IOError);
  check("tiny", "abc", "truncated: 3 bytes, shorter than the 8-byte header length");
  check("huge_header", le64(std::uint64_t{1} << 40) + good_header, "over the 100000000 byte limit");
  check("header_past_end", le64(1000) + good_header, "truncated: header length 1000 vs 54 bytes");
  check("truncated_data", st_file(good_header, good_data.substr(0, 6)),
        "tensor 'x': truncated: data_offsets [0, 8] reach past the end of the file, whose data section has 6 bytes");
  check("bad_json", st_file(R"({"x": {"dtype": )", good_data), "the header is not valid JSON");
  check("not_object", st_file("[1, 2, 3]", ""), "the header is not a JSON object");
  check("dtype", st_file(R"({"x":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", good_data),
        "tensor 'x': unsupported dtype 'F8_E4M3' (normgrad reads F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, "
        "U16, U8, BOOL)");
  check("no_dtype", st_file(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", good_data), "missing \"dtype\"");
  check("neg_shape", st_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", good_data),
        "shape [-2] is not a list of non-negative integers");
  check("shape_size", st_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", good_data),
        "shape [3] of dtype F32 does not match data_offsets [0, 8] (8 bytes)");
  check("shape_overflow",
        st_file(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})",
                good_data),
        "does not match data_offsets");
  check("offsets_outside", st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", good_data),
        "truncated: data_offsets [4, 12] reach past the end of the file, whose data section has 8 bytes");
  check("offsets_reversed", st_file(R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", good_data),
        "data_offsets [8, 4] end before they begin");
  check("offsets_shape", st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", good_data),
        "\"data_offsets\" must be a list of two non-negative integers");
  check("overlap",
        st_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                good_data),
        "overlap");
  check("gap", st_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", good_data),
        "bytes [0, 4) of the data section belong to no tensor");
  check("trailing", st_file(good_header, good_data + "xyz"), "3 bytes of data after the last tensor");
  check("metadata", st_file(R"({"__metadata__":{"k":1}})", ""), "__metadata__ value for 'k' is not a string");
}

TEST_CASE("safetensors: save refuses bad names") {
  TempDir dir("st_names");
  const ng::Tensor t = ng::zeros({2});
  CHECK_THROWS_WITH_AS(save_safetensors(dir / "a", {{"x", t}, {"x", t}}), doctest::Contains("duplicate tensor name 'x'"),
                       ng::ValueError);
  CHECK_THROWS_WITH_AS(save_safetensors(dir / "a", {{"__metadata__", t}}), doctest::Contains("reserved"),
                       ng::ValueError);
  CHECK_THROWS_WITH_AS(save_safetensors(dir / "a", {{"", t}}), doctest::Contains("empty name"), ng::ValueError);
  CHECK_FALSE(fs::exists(dir / "a"));
}

TEST_CASE("save_module / load_module: round trip and one error listing every mismatch") {
  TempDir dir("st_module");
  auto saved = two_toys(1);
  ng::io::save_module(dir / "m.safetensors", *saved, {{"epoch", "4"}});
  auto loaded = two_toys(100);
  const auto meta = ng::io::load_module(dir / "m.safetensors", *loaded).metadata;
  CHECK(meta.at("format") == "pt");
  CHECK(meta.at("epoch") == "4");
  const auto a = saved->state_dict(), b = loaded->state_dict();
  REQUIRE(a.size() == 6);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].first);
    CHECK(b[i].first == a[i].first);
    CHECK(bit_equal(a[i].second, b[i].second));
  }
  // The keys in the file are PyTorch's state_dict keys.
  const auto file = load_safetensors(dir / "m.safetensors");
  std::vector<std::string> names;
  for (const auto& [n, t] : file.tensors) names.push_back(n);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "0.num_batches_tracked", "1.weight", "1.bias",
                                          "1.num_batches_tracked"});

  // Hidden size 4 instead of 5 (three shape mismatches), one layer missing in the file, an
  // extra key, a float64 num_batches_tracked (converted): all in one message, and the model
  // is left untouched.
  NamedTensors sd = saved->state_dict();
  sd.erase(sd.begin() + 3, sd.end());  // drop layer 1
  sd.emplace_back("extra", ng::zeros({1}));
  sd[2].second = ng::zeros({}, ng::DType::f64);  // 0.num_batches_tracked as float64: fine
  save_safetensors(dir / "bad.safetensors", sd);
  auto model = two_toys(7, 4);
  const auto before = model->state_dict()[0].second.to_vector();
  try {
    ng::io::load_module(dir / "bad.safetensors", *model);
    FAIL("load_module accepted a mismatched file");
  } catch (const ng::ValueError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("load_module: '" + (dir / "bad.safetensors") +
                   "': Sequential.load_state_dict: the state dict does not fit the model; nothing was loaded") !=
          std::string::npos);
    CHECK(msg.find("shape mismatch for '0.weight': [5, 3] in the state dict vs [4, 3] in the model") != std::string::npos);
    CHECK(msg.find("shape mismatch for '0.bias': [5] in the state dict vs [4] in the model") != std::string::npos);
    CHECK(msg.find("'0.num_batches_tracked'") == std::string::npos);  // float64 0.0 converts to int64
    CHECK(msg.find("missing keys (3): '1.weight', '1.bias', '1.num_batches_tracked'") != std::string::npos);
    CHECK(msg.find("unexpected keys (1): 'extra'") != std::string::npos);
  }
  CHECK(model->state_dict()[0].second.to_vector() == before);

  // strict = false: the matching keys load, the rest come back; a float64 file loads into
  // the float32 model.
  NamedTensors partial = saved->state_dict();
  partial.erase(partial.begin() + 3, partial.end());
  partial[0].second = partial[0].second.to(ng::DType::f64);
  partial.emplace_back("extra", ng::zeros({1}));
  save_safetensors(dir / "partial.safetensors", partial);
  auto target = two_toys(8);
  const auto r = ng::io::load_module(dir / "partial.safetensors", *target, {.strict = false});
  CHECK(r.keys.missing_keys == std::vector<std::string>{"1.weight", "1.bias", "1.num_batches_tracked"});
  CHECK(r.keys.unexpected_keys == std::vector<std::string>{"extra"});
  CHECK(bit_equal(target->state_dict()[0].second, saved->state_dict()[0].second));
  CHECK(target->state_dict()[0].second.dtype() == ng::DType::f32);

  // A checkpoint of a wrapper ("net." in front of every key): the error says how to load it.
  save_safetensors(dir / "wrapped.safetensors", ng::nn::add_prefix(saved->state_dict(), "net."));
  CHECK_THROWS_WITH_AS(ng::io::load_module(dir / "wrapped.safetensors", *target),
                       doctest::Contains("LoadOptions{.strip_prefix = \"net.\"}"), ng::ValueError);
  ng::io::load_module(dir / "wrapped.safetensors", *target, {.strip_prefix = "net."});
  CHECK(bit_equal(target->state_dict()[3].second, saved->state_dict()[3].second));
}

TEST_CASE("save_checkpoint / load_checkpoint: model, optimizer tensors and progress in one file") {
  TempDir dir("st_checkpoint");
  auto model = two_toys(3);
  ng::Generator g(9);
  const NamedTensors optimizer = {{"state.0.exp_avg", ng::randn({5, 3}, ng::DType::f32, &g)},
                                  {"state.0.step", ng::scalar(12.0)}};
  ng::io::DataLoader loader({ng::zeros({10, 2}), ng::zeros({10}, ng::DType::i64)},
                            {.batch_size = 3, .shuffle = true, .seed = 4});
  ng::io::Batch batch;
  loader.next(batch);
  ng::io::save_checkpoint(dir / "ckpt.safetensors", *model, optimizer,
                          {{"epoch", "0"}, {"optimizer", R"({"lr": 0.001})"}, {"data_loader", loader.state().to_json()}});

  const auto file = load_safetensors(dir / "ckpt.safetensors");
  CHECK(file.tensors.size() == 8);
  CHECK(file.tensors[6].first == "optimizer.state.0.exp_avg");

  auto restored = two_toys(50);
  const auto ck = ng::io::load_checkpoint(dir / "ckpt.safetensors", *restored);
  CHECK(bit_equal(restored->state_dict()[0].second, model->state_dict()[0].second));
  REQUIRE(ck.optimizer.size() == 2);
  CHECK(ck.optimizer[0].first == "state.0.exp_avg");
  CHECK(bit_equal(ck.optimizer[0].second, optimizer[0].second));
  CHECK(ck.optimizer[1].first == "state.0.step");
  CHECK(ck.optimizer[1].second.item() == 12.0);
  CHECK(ck.model.size() == 6);
  CHECK(ck.metadata.at("format") == "pt");
  CHECK(ck.metadata.at("optimizer") == R"({"lr": 0.001})");
  ng::io::DataLoader resumed({ng::zeros({10, 2}), ng::zeros({10}, ng::DType::i64)},
                             {.batch_size = 3, .shuffle = true, .seed = 4});
  resumed.set_state(ng::io::DataLoaderState::from_json(ck.metadata.at("data_loader")));
  CHECK(resumed.batch_index() == 1);
  CHECK(resumed.order() == loader.order());

  // A checkpoint also loads as a plain model file (the optimizer entries are skipped).
  auto plain = two_toys(60);
  ng::io::load_module(dir / "ckpt.safetensors", *plain);
  CHECK(bit_equal(plain->state_dict()[3].second, model->state_dict()[3].second));
}

TEST_CASE("safetensors: a failed save leaves the previous file intact and no temporary file") {
  TempDir dir("st_atomic");
  const std::string path = dir / "ckpt.safetensors";
  save_safetensors(path, {{"x", ng::full({3}, 1.0)}});
  const std::string old_bytes = read_bytes(path);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  auto no_temp_files = [&] {
    for (const auto& e : fs::directory_iterator(dir.path))
      if (e.path().filename().string().find(".tmp.") != std::string::npos && e.path() != fs::path(tmp)) return false;
    return true;
  };

  // 1. The temporary file cannot be created (its name is taken by a directory).
  fs::create_directory(tmp);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"x", ng::full({3}, 2.0)}}), doctest::Contains("cannot create"),
                       ng::IOError);
  CHECK(fs::is_directory(tmp));
  fs::remove(tmp);
  CHECK(read_bytes(path) == old_bytes);

  // 2. Written in full, then the rename fails (the target is a non-empty directory): the
  //    temporary file is removed and the directory untouched.
  const std::string blocked = dir / "blocked";
  fs::create_directories(fs::path(blocked) / "inside");
  CHECK_THROWS_WITH_AS(save_safetensors(blocked, {{"x", ng::full({3}, 2.0)}}), doctest::Contains("cannot rename"),
                       ng::IOError);
  CHECK(fs::is_directory(fs::path(blocked) / "inside"));
  CHECK(no_temp_files());
  CHECK_FALSE(fs::exists(blocked + ".tmp." + std::to_string(::getpid())));

  // 3. A directory we cannot write to (meaningless as root, who may write anyway).
  fs::permissions(dir.path, fs::perms::owner_read | fs::perms::owner_exec);
  if (::access(dir.path.c_str(), W_OK) == 0) {
    MESSAGE("running as root: the read-only directory case is skipped");
  } else {
    CHECK_THROWS_AS(save_safetensors(path, {{"x", ng::full({3}, 2.0)}}), ng::IOError);
  }
  fs::permissions(dir.path, fs::perms::owner_all);
  CHECK(read_bytes(path) == old_bytes);
  CHECK(load_safetensors(path).tensors[0].second.to_vector() == std::vector<double>{1, 1, 1});

  // A successful save replaces the file.
  save_safetensors(path, {{"x", ng::full({3}, 2.0)}});
  CHECK(load_safetensors(path).tensors[0].second.to_vector() == std::vector<double>{2, 2, 2});
  CHECK(no_temp_files());
}

TEST_CASE("safetensors: F16, BF16, integer and BOOL tensors load exactly, load_module converts to the model's dtype") {
  TempDir dir("st_dtypes");
  // F16 0x3C00 = 1, 0xC100 = -2.5, 0x0001 = 2^-24, 0x7C00 = inf; BF16 0x3F80 = 1, 0xC020 = -2.5,
  // 0x0001 = 2^-133, 0xFF80 = -inf.
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]},)"
      R"("i32":{"dtype":"I32","shape":[2],"data_offsets":[16,24]},)"
      R"("i16":{"dtype":"I16","shape":[1],"data_offsets":[24,26]},)"
      R"("i8":{"dtype":"I8","shape":[2],"data_offsets":[26,28]},)"
      R"("u8":{"dtype":"U8","shape":[1],"data_offsets":[28,29]},)"
      R"("flag":{"dtype":"BOOL","shape":[3],"data_offsets":[29,32]},)"
      R"("u16":{"dtype":"U16","shape":[1],"data_offsets":[32,34]},)"
      R"("u32":{"dtype":"U32","shape":[1],"data_offsets":[34,38]},)"
      R"("u64":{"dtype":"U64","shape":[1],"data_offsets":[38,46]}})";
  const std::string data = raw<std::uint16_t>({0x3C00, 0xC100, 0x0001, 0x7C00}) +
                           raw<std::uint16_t>({0x3F80, 0xC020, 0x0001, 0xFF80}) + raw<std::int32_t>({-2147483647 - 1, 7}) +
                           raw<std::int16_t>({-300}) + raw<std::int8_t>({-128, 127}) + raw<std::uint8_t>({255}) +
                           raw<std::uint8_t>({1, 0, 1}) + raw<std::uint16_t>({65535}) + raw<std::uint32_t>({4294967295u}) +
                           raw<std::uint64_t>({9223372036854775807ull});
  write_bytes(dir / "d.safetensors", st_file(header, data));
  const auto c = load_safetensors(dir / "d.safetensors");
  REQUIRE(c.tensors.size() == 10);
  auto get = [&](const std::string& n) -> const ng::Tensor& {
    for (const auto& [k, t] : c.tensors)
      if (k == n) return t;
    FAIL("no tensor " << n);
    throw 0;
  };
  CHECK(get("h").dtype() == ng::DType::f32);
  CHECK(get("h").to_vector() == std::vector<double>{1.0, -2.5, std::ldexp(1.0, -24), INFINITY});
  CHECK(get("b").shape() == ng::Shape{2, 2});
  CHECK(get("b").to_vector() == std::vector<double>{1.0, -2.5, std::ldexp(1.0, -133), -INFINITY});
  CHECK(get("i32").dtype() == ng::DType::i64);
  CHECK(get("i32").to_vector() == std::vector<double>{-2147483648.0, 7});
  CHECK(get("i16").to_vector() == std::vector<double>{-300});
  CHECK(get("i8").to_vector() == std::vector<double>{-128, 127});
  CHECK(get("u8").to_vector() == std::vector<double>{255});
  CHECK(get("flag").to_vector() == std::vector<double>{1, 0, 1});
  CHECK(get("u16").to_vector() == std::vector<double>{65535});
  CHECK(get("u32").to_vector() == std::vector<double>{4294967295.0});
  CHECK(get("u64").data<std::int64_t>()[0] == std::numeric_limits<std::int64_t>::max());
  CHECK(c.stored_dtypes.at("h") == "F16");
  CHECK(c.stored_dtypes.at("b") == "BF16");
  CHECK(c.stored_dtypes.at("flag") == "BOOL");

  // Out-of-range values are corrupt files, named.
  auto check = [&](const std::string& name, const std::string& hdr, const std::string& bytes, const std::string& expect) {
    CAPTURE(name);
    write_bytes(dir / name, st_file(hdr, bytes));
    CHECK_THROWS_WITH_AS(load_safetensors(dir / name), doctest::Contains(expect.c_str()), ng::IOError);
  };
  check("u64_big", R"({"u":{"dtype":"U64","shape":[2],"data_offsets":[0,16]}})", raw<std::uint64_t>({1, 1ull << 63}),
        "tensor 'u': U64 value 9223372036854775808 (element 1) does not fit in int64");
  check("bool_byte", R"({"f":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", raw<std::uint8_t>({0, 2}),
        "tensor 'f': BOOL byte 2 (element 1) is neither 0 nor 1");
  check("f16_size", R"({"h":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})", raw<std::uint16_t>({0, 0, 0, 0}),
        "shape [3] of dtype F16 does not match data_offsets [0, 8] (8 bytes)");
  // A file cut short in its data section says so.
  const std::string cut = st_file(header, data).substr(0, 8 + header.size() + 20);
  write_bytes(dir / "cut", cut);
  CHECK_THROWS_WITH_AS(load_safetensors(dir / "cut"), doctest::Contains("truncated"), ng::IOError);

  // An F16 file of a model's state dict loads into float32 and float64 models exactly.
  auto model = two_toys(3);
  NamedTensors half_sd;
  for (const auto& [k, t] : model->state_dict()) half_sd.emplace_back(k, t);
  ng::io::save_safetensors(dir / "half.safetensors", half_sd, {}, {.float_format = ng::io::FloatFormat::F16});
  const auto stored = load_safetensors(dir / "half.safetensors");
  CHECK(stored.stored_dtypes.at("0.weight") == "F16");
  CHECK(stored.stored_dtypes.at("0.num_batches_tracked") == "I64");
  auto f32_model = two_toys(9);
  ng::io::load_module(dir / "half.safetensors", *f32_model);
  auto f64_model = two_toys(9);
  f64_model->to(ng::DType::f64);
  ng::io::load_module(dir / "half.safetensors", *f64_model);
  const auto orig = model->state_dict()[0].second.to_vector();
  const auto v32 = f32_model->state_dict()[0].second.to_vector(), v64 = f64_model->state_dict()[0].second.to_vector();
  for (std::size_t i = 0; i < orig.size(); ++i) {
    const double rounded = ng::io::f16_to_float(ng::io::to_f16(orig[i]));
    CHECK(v32[i] == rounded);
    CHECK(v64[i] == rounded);
  }
  CHECK(f64_model->state_dict()[0].second.dtype() == ng::DType::f64);
}

TEST_CASE("safetensors: save in F16, BF16, F32 or F64 on request, a value the format cannot hold is refused") {
  TempDir dir("st_save_formats");
  const ng::Tensor x = ng::from_vector(std::vector<double>{1.0, -0.1, 1e-30, 70000.0}, {4}, ng::DType::f64);
  const ng::Tensor n = ng::from_vector(std::vector<std::int64_t>{5}, {1});
  using ng::io::FloatFormat;
  save_safetensors(dir / "bf16", {{"x", x}, {"n", n}}, {}, {.float_format = FloatFormat::BF16});
  const auto b = load_safetensors(dir / "bf16");
  CHECK(b.stored_dtypes.at("x") == "BF16");
  CHECK(b.stored_dtypes.at("n") == "I64");
  std::vector<double> expect;
  for (double v : x.to_vector()) expect.push_back(ng::io::bf16_to_float(ng::io::to_bf16(v)));
  CHECK(b.tensors[0].second.to_vector() == expect);
  CHECK(expect[1] == -0.10009765625);  // -0.1 to the nearest bfloat16
  const std::string bytes = read_bytes(dir / "bf16");
  CHECK(bytes.find("\"x\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}") != std::string::npos);

  save_safetensors(dir / "f32", {{"x", x}}, {}, {.float_format = FloatFormat::F32});
  CHECK(load_safetensors(dir / "f32").tensors[0].second.dtype() == ng::DType::f32);
  save_safetensors(dir / "f64", {{"x", x.to(ng::DType::f32)}}, {}, {.float_format = FloatFormat::F64});
  CHECK(load_safetensors(dir / "f64").tensors[0].second.to_vector() == x.to(ng::DType::f32).to_vector());

  // 70000 overflows F16 (largest 65504): refused, nothing written. Inf and NaN pass as they are.
  CHECK_THROWS_WITH_AS(save_safetensors(dir / "f16", {{"x", x}}, {}, {.float_format = FloatFormat::F16}),
                       doctest::Contains("save_safetensors: tensor 'x': value 70000 is finite but overflows F16 "
                                         "(largest 65504); BF16 has float32's range"),
                       ng::ValueError);
  CHECK_FALSE(fs::exists(dir / "f16"));
  CHECK_THROWS_WITH_AS(save_safetensors(dir / "f32b", {{"x", ng::scalar(1e300, ng::DType::f64)}}, {},
                                        {.float_format = FloatFormat::F32}),
                       doctest::Contains("overflows F32"), ng::ValueError);
  const ng::Tensor special = ng::from_vector(std::vector<double>{INFINITY, -INFINITY, NAN}, {3}, ng::DType::f64);
  save_safetensors(dir / "special", {{"s", special}}, {}, {.float_format = FloatFormat::F16});
  const auto s = load_safetensors(dir / "special").tensors[0].second.to_vector();
  CHECK(s[0] == INFINITY);
  CHECK(s[1] == -INFINITY);
  CHECK(std::isnan(s[2]));

  // save_module with BF16: half the bytes of the float32 file; loads back rounded.
  auto model = two_toys(4);
  ng::io::save_module(dir / "m32", *model);
  ng::io::save_module(dir / "m16", *model, {}, {.float_format = FloatFormat::BF16});
  CHECK(fs::file_size(dir / "m16") < fs::file_size(dir / "m32"));
  auto back = two_toys(5);
  ng::io::load_module(dir / "m16", *back);
  CHECK(back->state_dict()[1].second.to_vector()[0] ==
        ng::io::bf16_to_float(ng::io::to_bf16(model->state_dict()[1].second.to_vector()[0])));
}
