// Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70,000 grayscale 28 x 28 images of clothing
// in 10 classes, 60,000 for training and 10,000 for testing, stored as four gzip-compressed
// IDX files (io/idx.h):
//   train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
//   t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
//
// Where the files are looked for, first match wins:
//   1. the `dir` option, when not empty;
//   2. the environment variable NORMGRAD_DATA_DIR;
//   3. /usr/share/datasets/fashion-mnist, where Debian's package puts them
//      (apt-get install dataset-fashion-mnist).
//
// Images become float32 [N, 1, 28, 28]: pixel p in 0..255 maps to x = (p/255 - mean) / std
// with the training set's statistics mean 0.2860, std 0.3530 (so the training images have
// roughly zero mean and unit variance). Labels become int64 [N] in 0..9.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "io/dataset.h"

namespace ng::io {

enum class Split { train, test };

inline constexpr double kFashionMnistMean = 0.2860;
inline constexpr double kFashionMnistStd = 0.3530;
inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";
inline constexpr std::array<std::string_view, 10> kFashionMnistClasses = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

struct FashionMnistOptions {
  std::string dir = {};      // empty: NORMGRAD_DATA_DIR, then kFashionMnistDefaultDir
  std::int64_t limit = -1;   // keep only the first `limit` samples (quick runs); -1: all
  bool normalize = true;     // false: images stay in [0, 1]
};

// The directory the files are read from (see the order above).
std::string fashion_mnist_dir(const std::string& dir = "");

// Loads one split. Missing files throw ng::IOError saying how to install or point to them;
// damaged files throw the IDX reader's IOError.
TensorDataset load_fashion_mnist(Split split, const FashionMnistOptions& opt = {});

}  // namespace ng::io
