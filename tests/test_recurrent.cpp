#include <cmath>

#include "layers/layer_norm.h"
#include "layers/recurrent.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::nn;

namespace {

using Vec = std::vector<double>;
double sigm(double v) { return 1 / (1 + std::exp(-v)); }
std::size_t u(std::int64_t i) { return static_cast<std::size_t>(i); }

// pre[n, j] = sum_k W1[j, k] a[n, k] + b1[j] + sum_k W2[j, k] h[n, k] + b2[j]   (loops, doubles)
Vec affine2(const Tensor& W1, const Tensor& b1, const Vec& a, const Tensor& W2, const Tensor& b2, const Vec& h,
            std::int64_t N) {
  const auto G = W1.size(0), F = W1.size(1), H = W2.size(1);
  const Vec w1 = W1.to_vector(), w2 = W2.to_vector();
  const Vec bb1 = b1.defined() ? b1.to_vector() : Vec(u(G), 0.0);
  const Vec bb2 = b2.defined() ? b2.to_vector() : Vec(u(G), 0.0);
  Vec pre(u(N * G));
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t j = 0; j < G; ++j) {
      double s = bb1[u(j)] + bb2[u(j)];
      for (std::int64_t k = 0; k < F; ++k) s += w1[u(j * F + k)] * a[u(n * F + k)];
      for (std::int64_t k = 0; k < H; ++k) s += w2[u(j * H + k)] * h[u(n * H + k)];
      pre[u(n * G + j)] = s;
    }
  return pre;
}

// Row-wise layer norm with unit gain and zero bias (a fresh LayerNorm), biased variance.
Vec ln_rows(const Vec& v, std::int64_t rows, std::int64_t width, double eps = 1e-5) {
  Vec out(v.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (std::int64_t k = 0; k < width; ++k) mu += v[u(r * width + k)];
    mu /= static_cast<double>(width);
    for (std::int64_t k = 0; k < width; ++k) var += std::pow(v[u(r * width + k)] - mu, 2);
    var /= static_cast<double>(width);
    for (std::int64_t k = 0; k < width; ++k) out[u(r * width + k)] = (v[u(r * width + k)] - mu) / std::sqrt(var + eps);
  }
  return out;
}

std::vector<std::string> keys(const NamedTensors& nt) {
  std::vector<std::string> k;
  for (auto& [n, t] : nt) k.push_back(n);
  return k;
}

RNNOptions f64(Generator* g, std::int64_t layers = 1) {
  RNNOptions o;
  o.num_layers = layers;
  o.gen = g;
  o.dtype = DType::f64;
  return o;
}

}  // namespace

TEST_CASE("RNNCell / LSTMCell / GRUCell: PyTorch's equations and gate order, by loops") {
  Generator g(1);
  const std::int64_t N = 2, F = 3, H = 5;
  Tensor x = test::rnd({N, F}, 2, false), h = test::rnd({N, H}, 3, false), c = test::rnd({N, H}, 4, false);
  const Vec xv = x.to_vector(), hv = h.to_vector(), cv = c.to_vector();
  auto at = [](const Vec& v, std::int64_t n, std::int64_t G, std::int64_t j) { return v[u(n * G + j)]; };

  SUBCASE("RNNCell tanh and relu") {
    RNNCell cell(F, H, true, "tanh", &g, DType::f64);
    const Vec pre = affine2(cell.weight_ih, cell.bias_ih, xv, cell.weight_hh, cell.bias_hh, hv, N);
    Vec expect;
    for (double p : pre) expect.push_back(std::tanh(p));
    test::check_values(cell.step(x, h), expect, 1e-12);
    RNNCell rc(F, H, false, "relu", &g, DType::f64);
    const Vec pr = affine2(rc.weight_ih, Tensor(), xv, rc.weight_hh, Tensor(), hv, N);
    Vec er;
    for (double p : pr) er.push_back(std::max(p, 0.0));
    test::check_values(rc.step(x, h), er, 1e-12);
    CHECK(rc.repr() == "RNNCell(3, 5, bias=False, nonlinearity='relu')");
  }
  SUBCASE("LSTMCell: i, f, g, o blocks") {
    LSTMCell cell(F, H, true, &g, DType::f64);
    CHECK(cell.weight_ih.shape() == Shape{4 * H, F});
    const Vec pre = affine2(cell.weight_ih, cell.bias_ih, xv, cell.weight_hh, cell.bias_hh, hv, N);
    Vec eh, ec;
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < H; ++j) {
        const double i = sigm(at(pre, n, 4 * H, j)), f = sigm(at(pre, n, 4 * H, H + j));
        const double gg = std::tanh(at(pre, n, 4 * H, 2 * H + j)), o = sigm(at(pre, n, 4 * H, 3 * H + j));
        const double c2 = f * at(cv, n, H, j) + i * gg;
        ec.push_back(c2);
        eh.push_back(o * std::tanh(c2));
      }
    const RNNState s = cell.step(x, {h, c});
    test::check_values(s.h, eh, 1e-12);
    test::check_values(s.c, ec, 1e-12);
    CHECK(cell.repr() == "LSTMCell(3, 5)");
    CHECK(keys(cell.state_dict()) == std::vector<std::string>{"weight_ih", "weight_hh", "bias_ih", "bias_hh"});
  }
  SUBCASE("GRUCell: r, z, n blocks, r gates (W_hn h + b_hn)") {
    GRUCell cell(F, H, true, &g, DType::f64);
    const Tensor zero_ih = zeros({3 * H, F}, DType::f64), zero_hh = zeros({3 * H, H}, DType::f64);
    const Vec gi = affine2(cell.weight_ih, cell.bias_ih, xv, zero_hh, Tensor(), hv, N);
    const Vec gh = affine2(zero_ih, Tensor(), xv, cell.weight_hh, cell.bias_hh, hv, N);
    Vec eh;
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < H; ++j) {
        const double r = sigm(at(gi, n, 3 * H, j) + at(gh, n, 3 * H, j));
        const double z = sigm(at(gi, n, 3 * H, H + j) + at(gh, n, 3 * H, H + j));
        const double cand = std::tanh(at(gi, n, 3 * H, 2 * H + j) + r * at(gh, n, 3 * H, 2 * H + j));
        eh.push_back((1 - z) * cand + z * at(hv, n, H, j));
      }
    test::check_values(cell.step(x, h), eh, 1e-12);
  }
  SUBCASE("zero initial state and unbatched input") {
    LSTMCell cell(F, H, true, &g, DType::f64);
    const RNNState s0 = cell.step(x, {});
    const RNNState sz = cell.step(x, {zeros({N, H}, DType::f64), zeros({N, H}, DType::f64)});
    CHECK(s0.h.to_vector() == sz.h.to_vector());
    const RNNState su = cell.step(select(x, 0, 1), {select(h, 0, 1), select(c, 0, 1)});
    CHECK(su.h.shape() == Shape{H});
    test::check_values(su.h, select(cell.step(x, {h, c}).h, 0, 1).contiguous().to_vector(), 1e-12);
  }
}

TEST_CASE("LayerNormLSTMCell: LN on each pre-activation and on c inside the output tanh only (Ba et al.)") {
  Generator g(5);
  const std::int64_t N = 2, F = 3, H = 4;
  LayerNormLSTMCell cell(F, H, 1e-5, &g, DType::f64);
  Tensor x = test::rnd({N, F}, 6, false), h = test::rnd({N, H}, 7, false), c = test::rnd({N, H}, 8, false);
  const Tensor z_ih = zeros({4 * H, F}, DType::f64), z_hh = zeros({4 * H, H}, DType::f64);
  const Vec ih = ln_rows(affine2(cell.weight_ih, Tensor(), x.to_vector(), z_hh, Tensor(), h.to_vector(), N), N, 4 * H);
  const Vec hh = ln_rows(affine2(z_ih, Tensor(), x.to_vector(), cell.weight_hh, Tensor(), h.to_vector(), N), N, 4 * H);
  const Vec b = cell.bias.to_vector(), cv = c.to_vector();
  Vec c2(u(N * H)), o(c2.size());
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t j = 0; j < H; ++j) {
      auto gate = [&](std::int64_t blk) {
        const auto k = u(n * 4 * H + blk * H + j);
        return ih[k] + hh[k] + b[u(blk * H + j)];
      };
      const auto k = u(n * H + j);
      c2[k] = sigm(gate(1)) * cv[k] + sigm(gate(0)) * std::tanh(gate(2));
      o[k] = sigm(gate(3));
    }
  const Vec c2n = ln_rows(c2, N, H);
  Vec eh;
  for (std::size_t k = 0; k < c2.size(); ++k) eh.push_back(o[k] * std::tanh(c2n[k]));
  const RNNState s = cell.step(x, {h, c});
  test::check_values(s.c, c2, 1e-10);  // the carried cell state is NOT normalized
  test::check_values(s.h, eh, 1e-10);
  CHECK(keys(cell.state_dict()) == std::vector<std::string>{"weight_ih", "weight_hh", "bias", "ln_ih.weight",
                                                            "ln_ih.bias", "ln_hh.weight", "ln_hh.bias", "ln_c.weight",
                                                            "ln_c.bias"});
  CHECK(cell.ln_c->weight.dtype() == DType::f64);
}

TEST_CASE("LSTM / GRU: the sequence module equals looping its cells, over layers") {
  Generator g(9);
  const std::int64_t T = 4, N = 2, F = 3, H = 5;
  Tensor x = test::rnd({T, N, F}, 10, false);
  LSTM lstm(F, H, f64(&g, 2));
  CHECK(keys(lstm.state_dict()) == std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                                            "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"});
  CHECK(lstm.named_parameters()[4].second.shape() == Shape{4 * H, H});  // weight_ih_l1 reads layer 0's h
  CHECK(lstm.repr() == "LSTM(3, 5, num_layers=2)");
  Tensor h0 = test::rnd({2, N, H}, 11, false), c0 = test::rnd({2, N, H}, 12, false);
  const RNNResult r = lstm.forward_seq(x, {h0, c0});
  CHECK(r.output.shape() == Shape{T, N, H});
  CHECK(r.h_n.shape() == Shape{2, N, H});
  CHECK(r.c_n.shape() == Shape{2, N, H});
  // the same with two LSTMCells holding the same parameters
  std::vector<std::shared_ptr<LSTMCell>> cells;
  const auto params = lstm.named_parameters();
  for (std::size_t l = 0; l < 2; ++l) {
    auto cell = std::make_shared<LSTMCell>(l == 0 ? F : H, H, true, &g, DType::f64);
    NoGradGuard ng;
    cell->weight_ih.copy_(params[4 * l].second), cell->weight_hh.copy_(params[4 * l + 1].second);
    cell->bias_ih.copy_(params[4 * l + 2].second), cell->bias_hh.copy_(params[4 * l + 3].second);
    cells.push_back(cell);
  }
  RNNState s[2] = {{select(h0, 0, 0), select(c0, 0, 0)}, {select(h0, 0, 1), select(c0, 0, 1)}};
  std::vector<double> out;
  for (std::int64_t t = 0; t < T; ++t) {
    s[0] = cells[0]->step(select(x, 0, t), s[0]);
    s[1] = cells[1]->step(s[0].h, s[1]);
    const auto v = s[1].h.to_vector();
    out.insert(out.end(), v.begin(), v.end());
  }
  test::check_values(r.output, out, 1e-12);
  test::check_values(select(r.h_n, 0, 0), s[0].h.to_vector(), 1e-12);
  test::check_values(select(r.c_n, 0, 1), s[1].c.to_vector(), 1e-12);

  // GRU with one layer and no initial state against GRUCell
  GRU gru(F, H, f64(&g));
  GRUCell gc(F, H, true, &g, DType::f64);
  const auto gp = gru.named_parameters();
  gc.load_state_dict({{"weight_ih", gp[0].second}, {"weight_hh", gp[1].second}, {"bias_ih", gp[2].second},
                      {"bias_hh", gp[3].second}});
  Tensor hg;
  for (std::int64_t t = 0; t < T; ++t) hg = gc.step(select(x, 0, t), hg);
  const RNNResult rg = gru.forward_seq(x);
  CHECK_FALSE(rg.c_n.defined());
  test::check_values(select(rg.h_n, 0, 0), hg.to_vector(), 1e-12);
  test::check_values(select(rg.output, 0, T - 1), hg.to_vector(), 1e-12);
}

TEST_CASE("LayerNormLSTM: the fused sequence equals looping LayerNormLSTMCell, values and gradients, 2 layers") {
  Generator g(19);
  const std::int64_t T = 4, N = 2, F = 3, H = 5;
  LayerNormLSTM m(F, H, f64(&g, 2));
  {  // gains and biases away from 1 and 0, so that every LayerNorm parameter matters
    NoGradGuard ng;
    std::uint64_t seed = 40;
    for (auto& [name, p] : m.named_parameters())
      if (name.find(".ln_") != std::string::npos) p.copy_(add(mul(test::rnd(p.shape(), seed++, false), 0.3), 1.0));
  }
  const Tensor x = test::rnd({T, N, F}, 20), h0 = test::rnd({2, N, H}, 21), c0 = test::rnd({2, N, H}, 22);
  const RNNResult r = m.forward_seq(x, {h0, c0});
  // the same with two cells holding copies of the parameters ("l0.weight_ih" -> "weight_ih")
  std::vector<std::shared_ptr<LayerNormLSTMCell>> cells;
  for (std::int64_t l = 0; l < 2; ++l) {
    auto cell = std::make_shared<LayerNormLSTMCell>(l == 0 ? F : H, H, 1e-5, &g, DType::f64);
    NamedTensors sd;
    const std::string prefix = fmt::format("l{}.", l);
    for (auto& [name, t] : m.state_dict())
      if (name.rfind(prefix, 0) == 0) sd.push_back({name.substr(prefix.size()), t.detach().clone()});
    cell->load_state_dict(sd);
    cells.push_back(cell);
  }
  RNNState s[2] = {{select(h0, 0, 0), select(c0, 0, 0)}, {select(h0, 0, 1), select(c0, 0, 1)}};
  std::vector<Tensor> outs;
  for (std::int64_t t = 0; t < T; ++t) {
    s[0] = cells[0]->step(select(x, 0, t), s[0]);
    s[1] = cells[1]->step(s[0].h, s[1]);
    outs.push_back(s[1].h);
  }
  const Tensor ref = stack(outs, 0);
  test::check_values(r.output, ref.to_vector(), 1e-12);
  test::check_values(select(r.c_n, 0, 1), s[1].c.to_vector(), 1e-12);
  test::check_values(select(r.h_n, 0, 0), s[0].h.to_vector(), 1e-12);
  // gradients of one loss w.r.t. x, the initial state and every parameter, in the same order
  const Tensor w = test::rnd({T, N, H}, 23, false);
  const Tensor loss_m = add(mul(r.output, w).sum(), select(r.c_n, 0, 0).sum());
  const Tensor loss_c = add(mul(ref, w).sum(), s[0].c.sum());
  std::vector<Tensor> in_m{x, h0, c0}, in_c{x, h0, c0};
  for (auto& [name, p] : m.named_parameters()) in_m.push_back(p);
  for (auto& cell : cells)
    for (auto& [name, p] : cell->named_parameters()) in_c.push_back(p);
  REQUIRE(in_m.size() == in_c.size());
  const auto gm = grad({loss_m}, in_m), gc = grad({loss_c}, in_c);
  for (std::size_t k = 0; k < gm.size(); ++k) {
    INFO("input " << k);
    test::check_values(gm[k], gc[k].to_vector(), 1e-11);
  }
}

TEST_CASE("LSTM: batch_first and unbatched inputs give the same numbers") {
  Generator g1(2), g2(2), g3(2);
  Tensor x = test::rnd({5, 2, 3}, 3, false);
  RNNOptions bf = f64(&g2);
  bf.batch_first = true;
  LSTM a(3, 4, f64(&g1)), b(3, 4, bf), un(3, 4, f64(&g3));
  const RNNResult ra = a.forward_seq(x), rb = b.forward_seq(transpose(x, 0, 1));
  CHECK(rb.output.shape() == Shape{2, 5, 4});
  test::check_values(transpose(rb.output, 0, 1).contiguous(), ra.output.to_vector(), 1e-12);
  test::check_values(rb.h_n, ra.h_n.to_vector(), 1e-12);
  CHECK(b.repr() == "LSTM(3, 4, batch_first=True)");
  const RNNResult ru = un.forward_seq(select(x, 1, 1));  // (T, F)
  CHECK(ru.output.shape() == Shape{5, 4});
  CHECK(ru.h_n.shape() == Shape{1, 4});
  test::check_values(ru.output, select(ra.output, 1, 1).contiguous().to_vector(), 1e-12);
}

TEST_CASE("recurrent: float64 gradcheck over 4-5 time steps, batch 2, w.r.t. input, initial state and parameters") {
  Generator g(21);
  const std::int64_t T = 4, N = 2, F = 3, H = 3;
  Tensor x = test::rnd({T, N, F}, 22);
  SUBCASE("LSTM, 2 layers, with (h0, c0); output and c_n checked") {
    LSTM m(F, H, f64(&g, 2));
    Tensor h0 = test::rnd({2, N, H}, 23), c0 = test::rnd({2, N, H}, 24);
    std::vector<Tensor> inputs{x, h0, c0};
    for (auto& p : m.parameters()) inputs.push_back(p);
    CHECK_GRADCHECK(gradcheck(
        [&](const std::vector<Tensor>& v) {
          const RNNResult r = m.forward_seq(v[0], {v[1], v[2]});
          return cat({flatten(r.output), flatten(r.c_n)}, 0);
        },
        inputs));
  }
  SUBCASE("GRU") {
    GRU m(F, H, f64(&g));
    CHECK_GRADCHECK(nn::gradcheck(m, x));
  }
  SUBCASE("RNN (tanh), 2 layers") {
    RNN m(F, H, f64(&g, 2));
    CHECK_GRADCHECK(nn::gradcheck(m, x));
  }
  SUBCASE("LayerNormLSTM with (h0, c0); output and c_n checked") {
    LayerNormLSTM m(F, H, f64(&g));
    Tensor h0 = test::rnd({1, N, H}, 25), c0 = test::rnd({1, N, H}, 26);
    std::vector<Tensor> inputs{x, h0, c0};
    for (auto& p : m.parameters()) inputs.push_back(p);
    CHECK_GRADCHECK(gradcheck(
        [&](const std::vector<Tensor>& v) {
          const RNNResult r = m.forward_seq(v[0], {v[1], v[2]});
          return cat({flatten(r.output), flatten(r.c_n)}, 0);
        },
        inputs));
  }
  SUBCASE("LayerNormGRU, batch_first, 5 steps") {
    RNNOptions o = f64(&g);
    o.batch_first = true;
    LayerNormGRU m(F, H, o);
    CHECK_GRADCHECK(nn::gradcheck(m, test::rnd({N, 5, F}, 27)));
  }
}

namespace {
std::shared_ptr<RNNBase> make_rnn(RNNKind kind, std::int64_t in, std::int64_t hidden, RNNOptions o) {
  switch (kind) {
    case RNNKind::lstm: return std::make_shared<LSTM>(in, hidden, o);
    case RNNKind::gru: return std::make_shared<GRU>(in, hidden, o);
    case RNNKind::ln_lstm: return std::make_shared<LayerNormLSTM>(in, hidden, o);
    case RNNKind::ln_gru: return std::make_shared<LayerNormGRU>(in, hidden, o);
    default: return std::make_shared<RNN>(in, hidden, o);
  }
}
// x (T, N, F) with its time order reversed, by stacking the steps from the last.
Tensor time_reversed(const Tensor& x) {
  std::vector<Tensor> steps;
  for (std::int64_t t = x.size(0); t-- > 0;) steps.push_back(select(x, 0, t));
  return stack(steps, 0);
}
}  // namespace

TEST_CASE("recurrent: bidirectional as PyTorch: _reverse parameters, [forward, reverse] outputs, h_n layout") {
  Generator g(31);
  RNNOptions o = f64(&g, 2);
  o.bidirectional = true;
  LSTM lstm(3, 4, o);
  CHECK(keys(lstm.state_dict()) ==
        std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse",
                                 "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse", "weight_ih_l1",
                                 "weight_hh_l1", "bias_ih_l1", "bias_hh_l1", "weight_ih_l1_reverse",
                                 "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse"});
  CHECK(lstm.named_parameters()[8].second.shape() == Shape{16, 8});  // layer 1 reads [forward, reverse]
  CHECK(lstm.repr() == "LSTM(3, 4, num_layers=2, bidirectional=True)");
  LayerNormGRU lng(3, 4, o);
  CHECK(keys(lng.state_dict())[0] == "l0.weight_ih");
  CHECK(lng.named_parameters().size() == 4 * 8u);
  CHECK(keys(lng.state_dict()).at(8) == "l0_reverse.weight_ih");

  // Each kind, 2 layers, against one-direction 1-layer modules holding the same parameters:
  // layer l = cat(forward(x), time_reversed(reverse(time_reversed(x)))) on the feature dim.
  const std::int64_t T = 4, N = 2, F = 3, H = 3;
  Tensor x = test::rnd({T, N, F}, 32, false);
  for (RNNKind kind : {RNNKind::rnn_tanh, RNNKind::lstm, RNNKind::gru, RNNKind::ln_lstm, RNNKind::ln_gru}) {
    auto bi = make_rnn(kind, F, H, o);
    CAPTURE(bi->repr());
    const bool lstm_like = kind == RNNKind::lstm || kind == RNNKind::ln_lstm;
    Tensor h0 = test::rnd({4, N, H}, 33, false), c0 = test::rnd({4, N, H}, 34, false);
    const RNNResult r = bi->forward_seq(x, {h0, lstm_like ? c0 : Tensor()});
    REQUIRE(r.output.shape() == Shape{T, N, 2 * H});
    REQUIRE(r.h_n.shape() == Shape{4, N, H});
    const NamedTensors sd = bi->state_dict();
    Tensor in = x;
    for (std::int64_t l = 0; l < 2; ++l) {
      std::vector<Tensor> outs;
      for (std::int64_t dir = 0; dir < 2; ++dir) {
        auto uni = make_rnn(kind, l == 0 ? F : 2 * H, H, f64(&g));
        NamedTensors mine;
        for (const auto& [key, t] : uni->state_dict()) {
          std::string k = key;
          k.replace(k.find("l0"), 2, fmt::format("l{}{}", l, dir ? "_reverse" : ""));
          for (const auto& [bk, bt] : sd)
            if (bk == k) mine.emplace_back(key, bt);
        }
        REQUIRE(mine.size() == uni->state_dict().size());
        uni->load_state_dict(mine);
        const std::int64_t k = 2 * l + dir;
        const RNNState s0{unsqueeze(select(h0, 0, k), 0), lstm_like ? unsqueeze(select(c0, 0, k), 0) : Tensor()};
        const RNNResult u = uni->forward_seq(dir ? time_reversed(in) : in, s0);
        outs.push_back(dir ? time_reversed(u.output) : u.output);
        test::check_values(select(r.h_n, 0, k), select(u.h_n, 0, 0).contiguous().to_vector(), 1e-12);
        if (lstm_like) test::check_values(select(r.c_n, 0, k), select(u.c_n, 0, 0).contiguous().to_vector(), 1e-12);
      }
      in = cat(outs, 2);
    }
    test::check_values(r.output, in.contiguous().to_vector(), 1e-12);
  }

  // batch_first and unbatched
  RNNOptions bf = f64(&g);
  bf.bidirectional = true;
  bf.batch_first = true;
  GRU gb(F, H, bf);
  const RNNResult rb = gb.forward_seq(transpose(x, 0, 1));
  CHECK(rb.output.shape() == Shape{N, T, 2 * H});
  CHECK(rb.h_n.shape() == Shape{2, N, H});
  const RNNResult ru = gb.forward_seq(select(x, 1, 0));
  CHECK(ru.output.shape() == Shape{T, 2 * H});
  CHECK(ru.h_n.shape() == Shape{2, H});
  test::check_values(ru.output, select(rb.output, 0, 0).contiguous().to_vector(), 1e-12);
  // the initial state must be (num_layers * 2, N, H)
  CHECK_THROWS_WITH_AS(gb.forward_seq(transpose(x, 0, 1), {zeros({1, N, H}, DType::f64), Tensor()}),
                       doctest::Contains("initial h has the wrong shape: expected [2, 2, 3] vs actual [1, 2, 3]"),
                       ShapeError);
}

TEST_CASE("recurrent: bidirectional float64 gradcheck and gradgradcheck") {
  Generator g(41);
  const std::int64_t T = 3, N = 2, F = 2, H = 2;
  Tensor x = test::rnd({T, N, F}, 42);
  RNNOptions o = f64(&g, 2);
  o.bidirectional = true;
  SUBCASE("LSTM, 2 layers, with (h0, c0)") {
    LSTM m(F, H, o);
    Tensor h0 = test::rnd({4, N, H}, 43), c0 = test::rnd({4, N, H}, 44);
    std::vector<Tensor> inputs{x, h0, c0};
    for (auto& p : m.parameters()) inputs.push_back(p);
    CHECK_GRADCHECK(gradcheck(
        [&](const std::vector<Tensor>& v) {
          const RNNResult r = m.forward_seq(v[0], {v[1], v[2]});
          return cat({flatten(r.output), flatten(r.h_n), flatten(r.c_n)}, 0);
        },
        inputs));
  }
  SUBCASE("GRU, RNN, LayerNormLSTM, LayerNormGRU") {
    for (RNNKind kind : {RNNKind::gru, RNNKind::rnn_tanh, RNNKind::ln_lstm, RNNKind::ln_gru}) {
      auto m = make_rnn(kind, F, H, o);
      CAPTURE(m->repr());
      CHECK_GRADCHECK(nn::gradcheck(*m, x));
    }
  }
  SUBCASE("GRU: second order w.r.t. the input") {
    RNNOptions o1 = f64(&g);
    o1.bidirectional = true;
    GRU m(F, H, o1);
    CHECK_GRADCHECK(gradgradcheck([&](const std::vector<Tensor>& v) { return m.forward_seq(v[0]).output; }, {x}));
  }
}

TEST_CASE("recurrent: truncated BPTT by detaching the carried state") {
  Generator g(31);
  LSTM m(3, 4, f64(&g));
  Tensor x1 = test::rnd({3, 2, 3}, 32), x2 = test::rnd({3, 2, 3}, 33);
  const RNNResult r1 = m.forward_seq(x1);
  const RNNState carried = r1.state().detach();
  CHECK_FALSE(carried.h.requires_grad());
  const RNNResult r2 = m.forward_seq(x2, carried);
  sum(r2.output).backward();
  CHECK_FALSE(x1.grad().defined());  // the gradient stopped at the chunk boundary
  CHECK(x2.grad().defined());
  // the parameters' gradient is exactly that of chunk 2 alone, started from the carried values
  const auto gw = m.parameters()[0].grad().to_vector();
  m.zero_grad();
  const RNNState fresh{carried.h.clone(), carried.c.clone()};
  sum(m.forward_seq(x2.detach(), fresh).output).backward();
  test::check_values(m.parameters()[0].grad(), gw, 1e-12);
  // without detaching, the gradient flows back into chunk 1
  m.zero_grad();
  sum(m.forward_seq(x2, m.forward_seq(x1).state()).output).backward();
  CHECK(x1.grad().defined());
}

TEST_CASE("recurrent: dropout between layers only in training, errors name the module") {
  Generator g(41);
  RNNOptions o = f64(&g, 2);
  o.dropout = 0.5;
  GRU m(3, 4, o);
  CHECK(m.repr() == "GRU(3, 4, num_layers=2, dropout=0.5)");
  Tensor x = test::rnd({3, 2, 3}, 42, false);
  m.eval();
  CHECK(m(x).to_vector() == m(x).to_vector());
  m.train();
  CHECK(m(x).to_vector() != m(x).to_vector());

  LSTM l(3, 4);
  CHECK_THROWS_WITH_AS(l(zeros({5, 2, 7})),
                       doctest::Contains("LSTM(3, 4): input [5, 2, 7] has 7 features: expected 3 vs actual 7"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(l(zeros({5})), doctest::Contains("LSTM(3, 4): expected a 3-d input (T, N, F)"), ShapeError);
  CHECK_THROWS_WITH_AS(l.forward_seq(zeros({5, 2, 3}), {zeros({1, 3, 4}), Tensor()}),
                       doctest::Contains("initial h has the wrong shape: expected [1, 2, 4] vs actual [1, 3, 4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(GRU(3, 4).forward_seq(zeros({5, 2, 3}), {Tensor(), zeros({1, 2, 4})}),
                       doctest::Contains("only LSTMs have one"), ValueError);
  CHECK_THROWS_WITH_AS(LSTMCell(3, 4)(zeros({2, 5})), doctest::Contains("LSTMCell(3, 4): input [2, 5] has 5 features"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(GRUCell(3, 4).step(zeros({2, 3}), zeros({2, 5})),
                       doctest::Contains("h has the wrong shape: expected [2, 4] vs actual [2, 5]"), ShapeError);
  RNNOptions bad;
  bad.num_layers = 0;
  CHECK_THROWS_WITH_AS(LSTM(3, 4, bad), doctest::Contains("LSTM: num_layers must be positive"), ValueError);
  CHECK_THROWS_WITH_AS(RNN(3, 4, {}, "gelu"), doctest::Contains("unknown nonlinearity 'gelu'"), ValueError);
}
