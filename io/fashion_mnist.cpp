#include "io/fashion_mnist.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "autograd/error.h"
#include "io/idx.h"

namespace ng::io {

std::string fashion_mnist_dir(const std::string& dir) {
  if (!dir.empty()) return dir;
  if (const char* env = std::getenv("NORMGRAD_DATA_DIR"); env && *env) return env;
  return kFashionMnistDefaultDir;
}

namespace {

std::string where_from(const std::string& dir) {
  if (!dir.empty()) return "the directory passed in FashionMnistOptions::dir";
  if (const char* env = std::getenv("NORMGRAD_DATA_DIR"); env && *env) return "NORMGRAD_DATA_DIR";
  return "the default directory";
}

}  // namespace

TensorDataset load_fashion_mnist(Split split, const FashionMnistOptions& opt) {
  namespace fs = std::filesystem;
  const std::string dir = fashion_mnist_dir(opt.dir);
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const std::string images_path = (fs::path(dir) / (prefix + "-images-idx3-ubyte.gz")).string();
  const std::string labels_path = (fs::path(dir) / (prefix + "-labels-idx1-ubyte.gz")).string();
  for (const auto& p : {images_path, labels_path}) {
    std::error_code ec;
    if (!fs::exists(p, ec))
      fail<IOError>(
          "fashion_mnist: '{}' not found (directory from {}).\n"
          "  Install the dataset:  sudo apt-get install dataset-fashion-mnist   (files go to {})\n"
          "  or put the four files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
          "  t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a directory and pass it as\n"
          "  FashionMnistOptions::dir or set NORMGRAD_DATA_DIR=<directory>.",
          p, where_from(opt.dir), kFashionMnistDefaultDir);
  }

  const IdxArray images = read_idx(images_path, {.expected_ndim = 3, .max_items = opt.limit});
  const IdxArray labels = read_idx(labels_path, {.expected_ndim = 1, .max_items = opt.limit});
  if (images.dims[1] != 28 || images.dims[2] != 28)
    fail<IOError>("fashion_mnist: '{}': images are {} x {}, expected 28 x 28", images_path, images.dims[1],
                  images.dims[2]);
  if (images.dims[0] != labels.dims[0])
    fail<IOError>("fashion_mnist: {} images in '{}' vs {} labels in '{}'", images.dims[0], images_path,
                  labels.dims[0], labels_path);
  const std::int64_t n = images.dims[0];

  // x = (p/255 - mean) / std, through a 256-entry table computed in double.
  const double mean = opt.normalize ? kFashionMnistMean : 0.0;
  const double stddev = opt.normalize ? kFashionMnistStd : 1.0;
  float table[256];
  for (int p = 0; p < 256; ++p) table[p] = static_cast<float>((p / 255.0 - mean) / stddev);

  TensorDataset ds{empty({n, 1, 28, 28}, DType::f32), empty({n}, DType::i64)};
  float* x = ds.inputs.data<float>();
  const std::uint8_t* pixels = images.data.data();
  const std::int64_t total = n * 28 * 28;
#pragma omp parallel for if (total > (1 << 20))
  for (std::int64_t i = 0; i < total; ++i) x[i] = table[pixels[i]];

  std::int64_t* y = ds.targets.data<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint8_t label = labels.data[static_cast<std::size_t>(i)];
    if (label >= kFashionMnistClasses.size())
      fail<IOError>("fashion_mnist: '{}': label {} at index {} is outside 0..9", labels_path, label, i);
    y[i] = label;
  }
  return ds;
}

}  // namespace ng::io
