#include "io/data_loader.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <utility>

#include <nlohmann/json.hpp>

#include "autograd/error.h"

namespace ng::io {

DataLoader::DataLoader(TensorDataset data, DataLoaderOptions opt) : opt_(opt), gen_(opt.seed) {
  if (opt.batch_size < 1) fail<ValueError>("DataLoader: batch_size must be positive, got {}", opt.batch_size);
  if (!data.inputs.defined() || !data.targets.defined())
    fail<ValueError>("DataLoader: the dataset needs both inputs and targets tensors");
  if (data.inputs.dim() < 1 || data.targets.dim() < 1)
    fail<ShapeError>("DataLoader: inputs and targets need a sample axis: shapes {} and {}", data.inputs.shape(),
                     data.targets.shape());
  if (data.inputs.size(0) != data.targets.size(0))
    fail<ShapeError>("DataLoader: inputs and targets differ in the number of samples: {} vs {}",
                     data.inputs.size(0), data.targets.size(0));
  // Batches copy raw rows, so the sources must be contiguous; they never carry history.
  data_.inputs = data.inputs.detach().contiguous();
  data_.targets = data.targets.detach().contiguous();
  const std::int64_t n = data_.size();
  num_batches_ = opt.drop_last ? n / opt.batch_size : (n + opt.batch_size - 1) / opt.batch_size;
  order_.resize(static_cast<std::size_t>(n));
  std::iota(order_.begin(), order_.end(), std::int64_t{0});
  epoch_start_state_ = gen_.state();
  shuffle_();
}

void DataLoader::shuffle_() {
  std::iota(order_.begin(), order_.end(), std::int64_t{0});
  if (!opt_.shuffle) return;
  // Fisher-Yates: for i = n-1 .. 1, swap position i with a uniform j in [0, i].
  for (std::int64_t i = static_cast<std::int64_t>(order_.size()) - 1; i > 0; --i) {
    const std::int64_t j = gen_.randint(0, i + 1);
    std::swap(order_[static_cast<std::size_t>(i)], order_[static_cast<std::size_t>(j)]);
  }
}

void DataLoader::start_next_epoch() {
  ++epoch_;
  batch_ = 0;
  epoch_start_state_ = gen_.state();
  shuffle_();
}

Tensor DataLoader::gather_(const Tensor& src, Tensor& buffer, std::int64_t first, std::int64_t count) {
  Shape full = src.shape();
  full[0] = opt_.batch_size;
  // Reuse the buffer unless a batch handed out earlier still shares its storage.
  if (!buffer.defined() || buffer.impl().storage.use_count() > 1) buffer = empty(full, src.dtype());
  const std::size_t item = dtype_size(src.dtype());
  const std::size_t row_bytes = static_cast<std::size_t>(src.numel() / src.size(0)) * item;
  const char* from = static_cast<const char*>(src.impl().storage->data) + static_cast<std::size_t>(src.offset()) * item;
  char* to = static_cast<char*>(buffer.impl().storage->data);
  for (std::int64_t i = 0; i < count; ++i) {
    const auto sample = static_cast<std::size_t>(order_[static_cast<std::size_t>(first + i)]);
    std::memcpy(to + static_cast<std::size_t>(i) * row_bytes, from + sample * row_bytes, row_bytes);
  }
  Shape shape = src.shape();
  shape[0] = count;
  return make_view(buffer, shape, contiguous_strides(shape), 0);
}

bool DataLoader::next(Batch& out) {
  out = Batch{};  // release the previous batch first, so its buffer can be reused
  if (batch_ >= num_batches_) return false;
  const std::int64_t first = batch_ * opt_.batch_size;
  const std::int64_t count = std::min(opt_.batch_size, data_.size() - first);
  out.inputs = gather_(data_.inputs, inputs_buffer_, first, count);
  out.targets = gather_(data_.targets, targets_buffer_, first, count);
  ++batch_;
  return true;
}

DataLoader::iterator& DataLoader::iterator::operator++() {
  if (loader_ && !loader_->next(batch_)) loader_ = nullptr;
  return *this;
}

DataLoader::iterator DataLoader::begin() {
  if (num_batches_ > 0 && batch_ >= num_batches_) start_next_epoch();
  return iterator(this);
}

DataLoaderState DataLoader::state() const {
  return {epoch_, batch_, epoch_start_state_, data_.size(), opt_.batch_size, opt_.shuffle, opt_.drop_last};
}

void DataLoader::set_state(const DataLoaderState& s) {
  if (s.num_samples != data_.size() || s.batch_size != opt_.batch_size || s.shuffle != opt_.shuffle ||
      s.drop_last != opt_.drop_last)
    fail<ValueError>(
        "DataLoader::set_state: the state belongs to another loader: (samples {}, batch_size {}, shuffle {}, "
        "drop_last {}) vs (samples {}, batch_size {}, shuffle {}, drop_last {})",
        data_.size(), opt_.batch_size, opt_.shuffle, opt_.drop_last, s.num_samples, s.batch_size, s.shuffle,
        s.drop_last);
  if (s.epoch < 0 || s.batch < 0 || s.batch > num_batches_)
    fail<ValueError>("DataLoader::set_state: epoch {} / batch {} out of range (batches per epoch: {})", s.epoch,
                     s.batch, num_batches_);
  gen_.set_state(s.generator);
  epoch_start_state_ = s.generator;
  shuffle_();  // the same permutation as the epoch saw, and gen_ where it was after drawing it
  epoch_ = s.epoch;
  batch_ = s.batch;
}

std::string DataLoaderState::to_json() const {
  nlohmann::ordered_json j;
  j["epoch"] = epoch;
  j["batch"] = batch;
  j["num_samples"] = num_samples;
  j["batch_size"] = batch_size;
  j["shuffle"] = shuffle;
  j["drop_last"] = drop_last;
  j["generator"] = generator;
  return j.dump();
}

DataLoaderState DataLoaderState::from_json(const std::string& text) {
  try {
    const auto j = nlohmann::json::parse(text);
    DataLoaderState s;
    s.epoch = j.at("epoch").get<std::int64_t>();
    s.batch = j.at("batch").get<std::int64_t>();
    s.num_samples = j.at("num_samples").get<std::int64_t>();
    s.batch_size = j.at("batch_size").get<std::int64_t>();
    s.shuffle = j.at("shuffle").get<bool>();
    s.drop_last = j.at("drop_last").get<bool>();
    s.generator = j.at("generator").get<std::string>();
    return s;
  } catch (const nlohmann::json::exception& e) {
    fail<ValueError>("DataLoaderState::from_json: malformed state: {}", e.what());
  }
}

}  // namespace ng::io
