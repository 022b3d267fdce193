// normgrad's side of the attention rows (see attention_rows.h).
#include "bench/attention_rows.h"

#include <memory>

#include "autograd/ops.h"
#include "examples/lm_models.h"
#include "optim/adam.h"

namespace bench::attention {

namespace {
constexpr std::uint64_t kSeed = 77;

// The model and a fixed batch of token ids, both from fixed seeds.
struct Gpt {
  explicit Gpt(const GptConfig& c)
      : gen(std::make_shared<ng::Generator>(kSeed)),
        net(std::make_shared<demo::TinyGPT>(c.vocab, c.block, c.d_model, c.heads, c.layers,
                                            ng::nn::TransformerNorm::layer_norm,
                                            /*pre_ln=*/false, /*dropout=*/0.0, gen.get())) {
    ng::Generator data(kSeed + 1);
    x = ng::randint({c.batch, c.block}, 0, c.vocab, &data);
    y = ng::randint({c.batch, c.block}, 0, c.vocab, &data);
  }
  std::shared_ptr<ng::Generator> gen;
  std::shared_ptr<demo::TinyGPT> net;
  ng::Tensor x, y;
};
}  // namespace

std::function<void()> ng_attention_fb() {
  ng::Generator g(kSeed);
  const ng::Shape s{kBatch, kHeads, kLen, kHeadDim};
  ng::Tensor q = ng::randn(s, ng::DType::f32, &g).requires_grad_(),
             k = ng::randn(s, ng::DType::f32, &g).requires_grad_(),
             v = ng::randn(s, ng::DType::f32, &g).requires_grad_();
  const ng::Tensor dout = ng::randn(s, ng::DType::f32, &g);
  return [=]() mutable {
    ng::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true).backward(dout);
    q.zero_grad();
    k.zero_grad();
    v.zero_grad();
  };
}

std::function<double()> ng_gpt_step(const GptConfig& c) {
  auto m = std::make_shared<Gpt>(c);
  auto opt = std::make_shared<ng::optim::Adam>(m->net->parameters(), ng::optim::AdamOptions{.lr = c.lr});
  m->net->train();
  return [m, opt]() {
    opt->zero_grad();
    // logits as (B T, V) rows, as LibTorch's side computes them
    const ng::Tensor logits = m->net->logits(m->x);
    ng::Tensor loss = ng::cross_entropy(ng::reshape(logits, {-1, logits.size(-1)}), ng::reshape(m->y, {-1}));
    loss.backward();
    opt->step();
    return loss.item();
  };
}

GptInit gpt_init(const GptConfig& c) {
  const Gpt m(c);
  GptInit out;
  for (const auto& [name, t] : m.net->named_parameters()) {
    const ng::Tensor ct = t.contiguous();
    out.names.push_back(name);
    out.shapes.push_back(ct.shape().vec());
    out.values.emplace_back(ct.data<float>(), ct.data<float>() + ct.numel());
  }
  out.x = std::vector<std::int64_t>(m.x.data<std::int64_t>(), m.x.data<std::int64_t>() + m.x.numel());
  out.y = std::vector<std::int64_t>(m.y.data<std::int64_t>(), m.y.data<std::int64_t>() + m.y.numel());
  return out;
}

}  // namespace bench::attention
