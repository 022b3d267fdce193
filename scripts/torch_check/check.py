# Loads what write_modules.cpp wrote into torch.nn modules (strict=True) and compares outputs.
import json, struct, sys
import numpy as np, torch
torch.manual_seed(0)
DIR = sys.argv[1] if len(sys.argv) > 1 else '/tmp/normgrad_torch_check'
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); out = {}
    dt = {'F32': np.float32, 'F64': np.float64, 'I64': np.int64}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; a = np.frombuffer(b[8+n+s:8+n+e], dtype=dt[v['dtype']]).reshape(v['shape'])
        out[k] = torch.from_numpy(a.copy())
    return out
nn = torch.nn
def run(name, mod, f):
    sd = load(f'{DIR}/{name}.safetensors'); io = load(f'{DIR}/{name}.io.safetensors')
    mod.load_state_dict(sd, strict=True)
    got = f(mod, io)
    for k, t in got.items():
        d = (t - io[k]).abs().max().item()
        print(f'{name}: strict load OK; {k} max |torch - normgrad| = {d:.2e}'); assert d < 1e-5, d
b = lambda t: t.bool()
run('mha_default', nn.MultiheadAttention(8, 2), lambda m, io: dict(
    out=m(io['q'], io['k'], io['v'], key_padding_mask=b(io['kpm']))[0], w=m(io['q'], io['k'], io['v'], key_padding_mask=b(io['kpm']))[1],
    out_fused=m(io['q'], io['k'], io['v'], key_padding_mask=b(io['kpm']), need_weights=False)[0]))
run('mha_kv', nn.MultiheadAttention(8, 2, kdim=5, vdim=3, add_bias_kv=True), lambda m, io: dict(
    zip(['out', 'w'], m(io['q'], io['k'], io['v'], attn_mask=b(io['am']), average_attn_weights=False))))
run('mha_nobias', nn.MultiheadAttention(8, 4, bias=False, batch_first=True), lambda m, io: dict(zip(['out', 'w'], m(io['q'], io['q'], io['q']))))
run('layer_post', nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True), lambda m, io: dict(
    out=m(io['x'], src_mask=b(io['mask']), src_key_padding_mask=b(io['kpm']))))
run('layer_pre', nn.TransformerEncoderLayer(8, 2, 16, 0.0, activation='gelu', batch_first=True, norm_first=True), lambda m, io: dict(
    out=m(io['x'], src_mask=b(io['mask']), src_key_padding_mask=b(io['kpm']))))
run('encoder', nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, 0.0), 2, norm=nn.LayerNorm(8), enable_nested_tensor=False), lambda m, io: dict(out=m(io['x'])))
print('torch', torch.__version__, 'ALL OK')
