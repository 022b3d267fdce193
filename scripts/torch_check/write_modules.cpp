// Dev-time conformance check (not part of CI; needs Debian's python3-torch): writes the
// state_dicts of normgrad's MultiheadAttention / TransformerEncoderLayer / TransformerEncoder,
// with inputs and outputs, for check.py to load into torch.nn modules with strict=True and to
// compare the forward outputs. Run with scripts/torch_check/run.sh after building build/ci.
#include <string>
#include "io/safetensors.h"
#include "layers/attention.h"
#include "layers/transformer.h"
#include "layers/layer_norm.h"
#include "layers/init.h"
using namespace ng;
using namespace ng::nn;
static std::string dir = "/tmp/normgrad_torch_check";
static void save(const std::string& name, const Module& m, const io::NamedTensors& io_) {
  io::save_module(dir + "/" + name + ".safetensors", m);
  io::save_safetensors(dir + "/" + name + ".io.safetensors", io_);
}
int main(int argc, char** argv) {
  if (argc > 1) dir = argv[1];
  Generator g(1);
  const Tensor kpm = from_vector(std::vector<std::int64_t>{0, 0, 0, 0, 0, 0, 1, 1}, {2, 4});
  {
    MultiheadAttention m(MultiheadAttentionOptions(8, 2), &g);
    init::normal_(m.in_proj_bias, 0, 0.3, &g); init::normal_(m.out_proj->bias, 0, 0.3, &g);
    Tensor q = randn({3, 2, 8}, DType::f32, &g), k = randn({4, 2, 8}, DType::f32, &g), v = randn({4, 2, 8}, DType::f32, &g);
    auto [o, w] = m.forward(q, k, v, kpm);
    auto [o2, w2] = m.forward(q, k, v, kpm, false);
    save("mha_default", m, {{"q", q}, {"k", k}, {"v", v}, {"kpm", kpm}, {"out", o}, {"w", w}, {"out_fused", o2}});
  }
  {
    MultiheadAttention m(MultiheadAttentionOptions(8, 2).kdim(5).vdim(3).add_bias_kv(true), &g);
    init::normal_(m.in_proj_bias, 0, 0.3, &g);
    Tensor q = randn({3, 2, 8}, DType::f32, &g), k = randn({4, 2, 5}, DType::f32, &g), v = randn({4, 2, 3}, DType::f32, &g);
    const Tensor am = from_vector(std::vector<std::int64_t>{0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, {3, 4});
    auto [o, w] = m.forward(q, k, v, Tensor(), true, am, false);
    save("mha_kv", m, {{"q", q}, {"k", k}, {"v", v}, {"am", am}, {"out", o}, {"w", w}});
  }
  {
    MultiheadAttention m(MultiheadAttentionOptions(8, 4).bias(false).batch_first(true), &g);
    Tensor q = randn({2, 3, 8}, DType::f32, &g);
    auto [o, w] = m.forward(q, q, q);
    save("mha_nobias", m, {{"q", q}, {"out", o}, {"w", w}});
  }
  for (bool pre : {false, true}) {
    TransformerEncoderLayer layer(TransformerEncoderLayerOptions(8, 2).dim_feedforward(16).dropout(0.0).batch_first(true)
                                      .norm_first(pre).activation(pre ? TransformerActivation::gelu : TransformerActivation::relu), &g);
    Tensor x = randn({2, 4, 8}, DType::f32, &g);
    const Tensor causal = from_vector(std::vector<std::int64_t>{0,1,1,1, 0,0,1,1, 0,0,0,1, 0,0,0,0}, {4, 4});
    Tensor o = layer.forward(x, causal, kpm);
    save(pre ? "layer_pre" : "layer_post", layer, {{"x", x}, {"mask", causal}, {"kpm", kpm}, {"out", o}});
  }
  {
    TransformerEncoderLayer layer(TransformerEncoderLayerOptions(8, 2).dim_feedforward(16).dropout(0.0), &g);
    TransformerEncoder enc(layer, 2, make_token_norm(TransformerNorm::layer_norm, 8, 1e-5, DType::f32));
    Tensor x = randn({4, 2, 8}, DType::f32, &g);
    Tensor o = enc.forward(x);
    save("encoder", enc, {{"x", x}, {"out", o}});
  }
}
