// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors), which
// PyTorch reads with safetensors.torch.load_file. A file is:
//
//   8 bytes     N, the header length, unsigned little-endian
//   N bytes     a JSON object, padded with spaces to a multiple of 8:
//                 {"__metadata__": {"key": "value", ...},                 (optional, strings only)
//                  "<name>": {"dtype": "F32" | "F64" | "I64",
//                             "shape": [d0, d1, ...],                    ([] for a 0-d tensor)
//                             "data_offsets": [begin, end]}, ...}
//   the rest    the data section: each tensor's raw little-endian row-major bytes, at
//               [begin, end) relative to the start of the data section. Tensors are packed
//               in order, without gaps.
//
// Writing is atomic: the bytes go to "<path>.tmp.<pid>", are flushed to disk (fsync), and the
// temporary file is renamed over <path>, then the directory is synced. A failure at any step
// removes the temporary file and leaves a previous <path> untouched.
//
// Reading trusts nothing: the file must be at least 8 bytes, the header length within the
// file and at most 100 MB, the header a JSON object, each entry's dtype known, its shape a
// list of non-negative integers whose product times the item size equals end - begin, the
// offsets inside the data section, and the tensors must tile the data section exactly (no
// overlap, no gap, nothing after the last). Allocations never exceed the file's size. Any
// violation is an ng::IOError naming the file and the problem.
//
// ---- Layout of normgrad's files ------------------------------------------------------------
// Model (save_module): the module's state_dict() under PyTorch's key names
// ("0.weight", "bn1.running_mean", "bn1.num_batches_tracked", ...) plus the metadata
// {"format": "pt"}. In PyTorch:
//     model.load_state_dict(safetensors.torch.load_file("model.safetensors"))
//
// Training checkpoint (save_checkpoint): the same model tensors, unprefixed, plus
//   - the optimizer's tensors under "optimizer.<its own name>", e.g. "optimizer.state.0.exp_avg"
//     for the optimizer's "state.0.exp_avg";
//   - metadata: {"format": "pt"} and any caller keys. Non-tensor state travels as JSON text
//     in metadata values, by convention under these keys:
//       "optimizer"     the optimizer's hyperparameters / step counts (its own JSON)
//       "data_loader"   DataLoaderState::to_json() (io/data_loader.h)
//       "epoch", "step" plain numbers as text
// In PyTorch, drop the optimizer entries before loading the model:
//     sd = safetensors.torch.load_file("ckpt.safetensors")
//     model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("optimizer.")})
// load_module ignores "optimizer." entries too, so a training checkpoint also serves as a
// model file.
#pragma once
#include <map>
#include <string>
#include <string_view>

#include "layers/module.h"

namespace ng::io {

using NamedTensors = nn::NamedTensors;
using Metadata = std::map<std::string, std::string>;

inline constexpr std::uint64_t kSafetensorsMaxHeader = 100'000'000;  // bytes
inline constexpr std::string_view kOptimizerPrefix = "optimizer.";

struct SafetensorsContents {
  NamedTensors tensors;  // in file order (by data offset), i.e. the order they were saved in
  Metadata metadata;
};

// Writes the tensors (float32, float64 or int64; any strides; names unique, non-empty,
// not "__metadata__") and metadata, atomically. Throws ValueError for bad names, IOError
// when the file cannot be written.
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {});
// Reads and validates a whole file (see above).
SafetensorsContents load_safetensors(const std::string& path);

// The module's state_dict() (parameters and buffers) with metadata {"format": "pt"} added.
void save_module(const std::string& path, const nn::Module& module, const Metadata& metadata = {});
// Loads a file saved by save_module (or PyTorch's safetensors.torch.save_file of a state_dict)
// into the module. Every state_dict key must be present with the model's shape and dtype, and
// no other key may be present (except "optimizer." entries); otherwise nothing is loaded and
// one ng::ValueError lists every problem. Returns the file's metadata.
Metadata load_module(const std::string& path, nn::Module& module);

struct Checkpoint {
  NamedTensors model;      // as in the file (state_dict names)
  NamedTensors optimizer;  // with the "optimizer." prefix removed: "state.0.exp_avg", ...
  Metadata metadata;
};
// A training checkpoint: model, optimizer tensors and metadata in one file (layout above).
void save_checkpoint(const std::string& path, const nn::Module& model, const NamedTensors& optimizer_state,
                     const Metadata& metadata = {});
// Loads the model part into `model` (with load_module's checks) and returns everything,
// so the caller can hand `optimizer` and `metadata` to the optimizer and the data loader.
Checkpoint load_checkpoint(const std::string& path, nn::Module& model);

}  // namespace ng::io
