// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors), which
// PyTorch reads with safetensors.torch.load_file. A file is:
//
//   8 bytes     N, the header length, unsigned little-endian
//   N bytes     a JSON object, padded with spaces to a multiple of 8:
//                 {"__metadata__": {"key": "value", ...},                 (optional, strings only)
//                  "<name>": {"dtype": "F64" | "F32" | "F16" | "BF16" | "I64" | ... (below),
//                             "shape": [d0, d1, ...],                    ([] for a 0-d tensor)
//                             "data_offsets": [begin, end]}, ...}
//   the rest    the data section: each tensor's raw little-endian row-major bytes, at
//               [begin, end) relative to the start of the data section. Tensors are packed
//               in order, without gaps.
//
// Dtypes read: F64 and F32 as they are; F16 and BF16 into float32 (exact, io/float16.h);
// I64, I32, I16, I8, U64, U32, U16, U8 and BOOL into int64 (exact; a U64 value above 2^63 - 1
// and a BOOL byte other than 0 or 1 are refused). load_module then converts each value to
// the model's dtype. Written: F64, F32, I64 as the tensors are, or the floating tensors in
// the format SaveOptions::float_format asks for (F16 and BF16 rounded to nearest, ties to
// even; a finite value the format cannot hold is a ValueError, never a silent inf).
//
// Writing is atomic: the bytes go to "<path>.tmp.<pid>", are flushed to disk (fsync), and the
// temporary file is renamed over <path>, then the directory is synced. A failure at any step
// removes the temporary file and leaves a previous <path> untouched.
//
// Reading trusts nothing: the file must be at least 8 bytes, the header length within the
// file and at most 100 MB, the header a JSON object, each entry's dtype known, its shape a
// list of non-negative integers whose product times the item size equals end - begin, the
// offsets inside the data section, and the tensors must tile the data section exactly (no
// overlap, no gap, nothing after the last); a tensor reaching past the end of the file is
// reported as "truncated". Allocations never exceed 8 times the file's size (the tensors
// read, BOOL widened to int64). Any violation is an ng::IOError naming the file and the problem.
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
  std::map<std::string, std::string> stored_dtypes;  // each tensor's dtype in the file: "F16", "I64", ...
};

// The file dtype of floating tensors: as they are (keep), or converted.
enum class FloatFormat { keep, F64, F32, F16, BF16 };
struct SaveOptions {
  FloatFormat float_format = FloatFormat::keep;  // int64 tensors are always written as I64
};

// Writes the tensors (float32, float64 or int64; any strides; names unique, non-empty,
// not "__metadata__") and metadata, atomically. Throws ValueError for bad names or a value
// the requested float format cannot hold, IOError when the file cannot be written.
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {},
                      const SaveOptions& options = {});
// Reads and validates a whole file (see above).
SafetensorsContents load_safetensors(const std::string& path);

// The module's state_dict() (parameters and buffers) with metadata {"format": "pt"} added.
// SaveOptions{.float_format = FloatFormat::BF16} halves the file (num_batches_tracked stays I64).
void save_module(const std::string& path, const nn::Module& module, const Metadata& metadata = {},
                 const SaveOptions& options = {});

struct LoadedModule {
  Metadata metadata;          // the file's metadata
  nn::IncompatibleKeys keys;  // what was not loaded (always empty with strict = true)
};
// Loads a file saved by save_module (or PyTorch's safetensors.torch.save_file of a state_dict)
// into the module with PyTorch's load_state_dict rules (nn::Module::load_state_dict): values
// convert to the model's dtype, a shape mismatch is an error, strict decides whether missing
// and unexpected keys are errors or returned, prefixes can be stripped or added. "optimizer."
// entries are skipped. On any problem one ng::ValueError names the file and lists them all,
// and the module is unchanged.
LoadedModule load_module(const std::string& path, nn::Module& module, const nn::LoadOptions& options = {});

struct Checkpoint {
  NamedTensors model;      // as in the file (state_dict names)
  NamedTensors optimizer;  // with the "optimizer." prefix removed: "state.0.exp_avg", ...
  Metadata metadata;
  nn::IncompatibleKeys keys;  // model keys not loaded (strict = false only)
};
// A training checkpoint: model, optimizer tensors and metadata in one file (layout above).
void save_checkpoint(const std::string& path, const nn::Module& model, const NamedTensors& optimizer_state,
                     const Metadata& metadata = {});
// Loads the model part into `model` (with load_module's checks) and returns everything,
// so the caller can hand `optimizer` and `metadata` to the optimizer and the data loader.
Checkpoint load_checkpoint(const std::string& path, nn::Module& model, const nn::LoadOptions& options = {});

}  // namespace ng::io
