// The models of the character-level demos (header-only, so tests/test_lm_demos.cpp can build
// them too):
//   make_makemore_mlp   examples/makemore.cpp: Bengio et al.'s MLP with BatchNorm1d, LayerNorm or none
//   TinyGPT             examples/tiny_gpt.cpp: a causal Transformer of nn::TransformerEncoderLayer
//   read_corpus         a text file, or a folder of them concatenated
#pragma once
#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "io/text.h"
#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/embedding.h"
#include "layers/flatten.h"
#include "layers/init.h"
#include "layers/layer_norm.h"
#include "layers/linear.h"
#include "layers/positional.h"
#include "layers/transformer.h"

namespace demo {

// Embedding(vocab, embed) -> flatten -> [Linear(., hidden) -> norm -> Tanh] x layers ->
// Linear(hidden, vocab); norm "bn", "ln" or "none" (then the hidden Linears have biases).
// Kaiming-normal init for tanh (gain 5/3); the output weights scaled by 0.1.
inline std::shared_ptr<ng::nn::Sequential> make_makemore_mlp(const std::string& norm, std::int64_t vocab,
                                                             std::int64_t block, std::int64_t embed,
                                                             std::int64_t hidden, std::int64_t layers,
                                                             ng::Generator* gen) {
  using namespace ng::nn;
  auto net = std::make_shared<Sequential>();
  net->push_back(std::make_shared<Embedding>(vocab, embed, std::nullopt, gen));
  net->push_back(std::make_shared<Flatten>(1));
  std::int64_t in = block * embed;
  for (std::int64_t l = 0; l < layers; ++l) {
    auto lin = std::make_shared<Linear>(in, hidden, norm == "none", gen);  // a norm's shift makes a bias redundant
    init::kaiming_normal_(lin->weight, 0.0, init::FanMode::fan_in, "tanh", gen);
    net->push_back(lin);
    if (norm == "bn") net->push_back(std::make_shared<BatchNorm1d>(BatchNormOptions(hidden)));
    if (norm == "ln") net->push_back(std::make_shared<LayerNorm>(LayerNormOptions({hidden})));
    net->push_back(std::make_shared<Tanh>());
    in = hidden;
  }
  auto out = std::make_shared<Linear>(in, vocab, true, gen);
  {
    ng::NoGradGuard no_grad;
    out->weight.mul_(0.1);  // nearly uniform first predictions: initial loss ~ log(V)
  }
  net->push_back(out);
  return net;
}

using ng::nn::TransformerNorm;

// tokens (B, T) -> Embedding + learned positions -> causal TransformerEncoderLayers (GELU,
// feed-forward 4d) -> final norm (pre-LN only) -> Linear(d, V): logits (B, V, T).
class TinyGPT : public ng::nn::Module {
 public:
  TinyGPT(std::int64_t vocab, std::int64_t block, std::int64_t d, std::int64_t heads, std::int64_t layers,
          TransformerNorm norm, bool pre_ln, double dropout, ng::Generator* gen) {
    using namespace ng::nn;
    tok = register_module("tok_emb", std::make_shared<Embedding>(vocab, d, std::nullopt, gen));
    init::normal_(tok->weight, 0.0, 0.02, gen);  // GPT-2's scale
    pos = register_module("pos_emb", std::make_shared<LearnedPositionalEmbedding>(block, d, true, gen));
    auto list = register_module("blocks", std::make_shared<Sequential>());
    for (std::int64_t l = 0; l < layers; ++l) {
      auto layer = std::make_shared<TransformerEncoderLayer>(TransformerEncoderLayerOptions(d, heads)
                                                                 .dim_feedforward(4 * d)
                                                                 .dropout(dropout)
                                                                 .activation(TransformerActivation::gelu)
                                                                 .batch_first(true)
                                                                 .norm_first(pre_ln)
                                                                 .norm(norm),
                                                             gen);
      blocks.push_back(layer);
      list->push_back(layer);
    }
    if (pre_ln) ln_f = register_module("ln_f", make_token_norm(norm, d, 1e-5, ng::DType::f32));
    head = register_module("head", std::make_shared<Linear>(d, vocab, true, gen));
  }
  // x (B, T) int64 -> logits (B, V, T) (cross_entropy's (N, C, d) layout)
  ng::Tensor forward(const ng::Tensor& x) override { return ng::transpose(logits(x), 1, 2); }
  // x (B, T) int64 -> logits (B, T, V), contiguous: reshaped to (B T, V) they are the rows a
  // cross-entropy over the vocabulary reads without a copy (what bench/attention_rows.cpp uses)
  ng::Tensor logits(const ng::Tensor& x) {
    ng::Tensor h = pos->forward(tok->forward(x));
    for (auto& b : blocks) h = b->forward(h, ng::Tensor(), ng::Tensor(), /*is_causal=*/true);
    if (ln_f) h = ln_f->forward(h);
    return head->forward(h);
  }
  std::string type_name() const override { return "TinyGPT"; }

  std::shared_ptr<ng::nn::Embedding> tok;
  std::shared_ptr<ng::nn::LearnedPositionalEmbedding> pos;
  std::vector<std::shared_ptr<ng::nn::TransformerEncoderLayer>> blocks;
  ng::nn::ModulePtr ln_f;
  std::shared_ptr<ng::nn::Linear> head;
};

// A file, or every regular file of a folder (not symlinks, not fortune's .dat indexes), in name order.
inline std::u32string read_corpus(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) return ng::io::read_text(path);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(path))
    if (e.is_regular_file() && !e.is_symlink() && e.path().extension() != ".dat") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) throw std::invalid_argument(path + ": no text files");
  std::u32string text;
  for (const auto& f : files) text += ng::io::read_text(f.string());
  return text;
}

inline TransformerNorm parse_transformer_norm(const std::string& s) {
  if (s == "ln") return TransformerNorm::layer_norm;
  if (s == "rms") return TransformerNorm::rms_norm;
  if (s == "bn") return TransformerNorm::batch_norm;
  if (s == "none") return TransformerNorm::none;
  throw std::invalid_argument("--norm: ln, rms, bn or none");
}

}  // namespace demo
