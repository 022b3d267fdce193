// A whole training run in one safetensors file: model, optimizer, LR schedule, data-loader
// position and the caller's metadata (save_training / load_training).
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/core.h>

#include "io/data_loader.h"
#include "io/safetensors.h"
#include "layers/module.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace demo {

// ---- training checkpoints -----------------------------------------------------------------
// One safetensors file (io/safetensors.h) holds everything a run needs to continue exactly:
//   model tensors              parameters and buffers, PyTorch's state_dict names
//   "optimizer.<key>"          the optimizer's state_dict (momentum buffers, Adam moments, ...)
//   "optimizer.lr_scheduler.<key>"
//                              the schedule's state_dict (last_epoch, base_lrs, last_lr)
//   metadata "data_loader"     the loader's position and shuffling state (DataLoaderState)
//   metadata (caller's)        epoch, step, settings, running sums, ...
inline constexpr const char* kSchedulePrefix = "lr_scheduler.";

inline void save_training(const std::string& path, const ng::nn::Module& model, const ng::optim::Optimizer& opt,
                          const ng::optim::LRScheduler* sched, const ng::io::DataLoader& loader,
                          ng::io::Metadata metadata) {
  ng::io::NamedTensors opt_state = opt.state_dict();
  if (sched)
    for (auto& [k, v] : sched->state_dict()) opt_state.emplace_back(kSchedulePrefix + k, v);
  metadata["data_loader"] = loader.state().to_json();
  ng::io::save_checkpoint(path, model, opt_state, metadata);
}

// Loads a file written by save_training into objects built with the same settings; returns
// the metadata. The model is loaded with load_module's strict checks.
inline ng::io::Metadata load_training(const std::string& path, ng::nn::Module& model, ng::optim::Optimizer& opt,
                                      ng::optim::LRScheduler* sched, ng::io::DataLoader& loader) {
  ng::io::Checkpoint ck = ng::io::load_checkpoint(path, model);
  ng::io::NamedTensors opt_state, sched_state;
  const std::string prefix = kSchedulePrefix;
  for (auto& [k, v] : ck.optimizer) {
    if (k.rfind(prefix, 0) == 0)
      sched_state.emplace_back(k.substr(prefix.size()), v);
    else
      opt_state.emplace_back(k, v);
  }
  opt.load_state_dict(opt_state);
  if (sched) sched->load_state_dict(sched_state);
  auto it = ck.metadata.find("data_loader");
  if (it == ck.metadata.end()) throw std::runtime_error(path + ": not a training checkpoint (no data_loader state)");
  loader.set_state(ng::io::DataLoaderState::from_json(it->second));
  return ck.metadata;
}

}  // namespace demo
