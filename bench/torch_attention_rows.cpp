// LibTorch's side of the attention rows: see torch_attention_rows.h and attention_rows.h.
#include "bench/torch_attention_rows.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace bench::torch_rows {

std::function<void()> attention_fb(std::int64_t batch, std::int64_t heads, std::int64_t len, std::int64_t dim) {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  torch::Tensor q = torch::randn({batch, heads, len, dim}, f32).requires_grad_(true);
  torch::Tensor k = torch::randn({batch, heads, len, dim}, f32).requires_grad_(true);
  torch::Tensor v = torch::randn({batch, heads, len, dim}, f32).requires_grad_(true);
  torch::Tensor dout = torch::randn({batch, heads, len, dim}, f32);
  // The strongest LibTorch 1.13 composite, as its own F::multi_head_attention_forward writes it:
  // the query scaled first (B H L E values rather than B H L S scores), then one baddbmm that
  // adds the additive causal mask (0 / -inf, key j > query i) in the GEMM itself, softmax, bmm.
  torch::Tensor causal = torch::full({len, len}, -INFINITY, f32).triu(1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(dim));
  const std::int64_t bh = batch * heads;
  return [=]() mutable {
    torch::Tensor qs = q.mul(scale).reshape({bh, len, dim});
    torch::Tensor s = torch::baddbmm(causal, qs, k.reshape({bh, len, dim}).transpose(-2, -1));
    torch::bmm(torch::softmax(s, -1), v.reshape({bh, len, dim})).view({batch, heads, len, dim}).backward(dout);
    for (auto* t : {&q, &k, &v}) t->mutable_grad() = torch::Tensor();
  };
}

namespace {
struct GptImpl : torch::nn::Module {
  GptImpl(std::int64_t vocab, std::int64_t block, std::int64_t d, std::int64_t heads, std::int64_t layers)
      : tok_emb(register_module("tok_emb", torch::nn::Embedding(vocab, d))),
        pos_emb(register_module("pos_emb", torch::nn::Embedding(block, d))),
        blocks(register_module("blocks", torch::nn::ModuleList())),
        head(register_module("head", torch::nn::Linear(d, vocab))) {
    for (std::int64_t l = 0; l < layers; ++l)
      blocks->push_back(torch::nn::TransformerEncoderLayer(
          torch::nn::TransformerEncoderLayerOptions(d, heads).dim_feedforward(4 * d).dropout(0.0).activation(
              torch::kGELU)));
  }
  torch::Tensor forward(const torch::Tensor& x) {  // x (B, T) -> logits (B, T, V)
    const std::int64_t T = x.size(1);
    torch::Tensor h = tok_emb(x) + pos_emb->weight.slice(0, 0, T);
    h = h.transpose(0, 1);  // (T, B, d): LibTorch 1.13's layer is sequence-first
    torch::Tensor mask = torch::full({T, T}, -INFINITY).triu(1);
    for (const auto& m : *blocks) h = m->as<torch::nn::TransformerEncoderLayer>()->forward(h, mask);
    return head(h.transpose(0, 1));
  }
  torch::nn::Embedding tok_emb, pos_emb;
  torch::nn::ModuleList blocks;
  torch::nn::Linear head;
};
}  // namespace

std::function<double()> gpt_step(std::int64_t vocab, std::int64_t block, std::int64_t d_model, std::int64_t heads,
                                 std::int64_t layers, std::int64_t batch, double lr,
                                 const std::vector<std::string>& names,
                                 const std::vector<std::vector<std::int64_t>>& shapes,
                                 const std::vector<std::vector<float>>& values, const std::vector<std::int64_t>& x,
                                 const std::vector<std::int64_t>& y) {
  auto net = std::make_shared<GptImpl>(vocab, block, d_model, heads, layers);
  {
    torch::NoGradGuard no_grad;
    auto params = net->named_parameters();
    if (params.size() != names.size())
      throw std::runtime_error("gpt_step: LibTorch's model has " + std::to_string(params.size()) +
                               " parameters, normgrad's " + std::to_string(names.size()));
    for (std::size_t i = 0; i < names.size(); ++i) {
      torch::Tensor* p = params.find(names[i]);
      if (!p) throw std::runtime_error("gpt_step: LibTorch's model has no parameter " + names[i]);
      torch::Tensor src = torch::from_blob(const_cast<float*>(values[i].data()), shapes[i], torch::kFloat32);
      if (p->sizes() != src.sizes()) throw std::runtime_error("gpt_step: shape mismatch for " + names[i]);
      p->copy_(src);
    }
  }
  net->train();
  auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(lr));
  torch::Tensor xt = torch::tensor(x, torch::kInt64).view({batch, block});
  torch::Tensor yt = torch::tensor(y, torch::kInt64).view({batch * block});
  return [net, opt, xt, yt, vocab]() {
    for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();  // set_to_none, as normgrad
    torch::Tensor loss = torch::nn::functional::cross_entropy(net->forward(xt).reshape({-1, vocab}), yt);
    loss.backward();
    opt->step();
    return loss.item<double>();
  };
}

}  // namespace bench::torch_rows
