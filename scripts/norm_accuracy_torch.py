# PyTorch's float32 normalization outputs on the inputs bench/norm_accuracy.cpp wrote, with the
# same metric: |y - y_f64| / rms(y_f64), max and mean, where y_f64 is torch's float64 result on
# the same float32 values. Prints normgrad's error (its y from the file) next to PyTorch's.
# Dev-time only (Debian's python3-torch; torch 1.13 has no F.rms_norm, so RMSNorm is the usual
# composite x * rsqrt(mean(x^2) + eps) * weight, in the input's dtype):
#   build/ci/bin/norm_accuracy --dump /tmp/norm_accuracy && python3 scripts/norm_accuracy_torch.py /tmp/norm_accuracy
import glob, json, os, struct, sys
import numpy as np, torch
import torch.nn.functional as F

torch.set_num_threads(1)
DIR = sys.argv[1] if len(sys.argv) > 1 else '/tmp/norm_accuracy'


def load(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop('__metadata__', {})
    dt = {'F32': np.float32, 'F64': np.float64}
    out = {}
    for k, v in header.items():
        s, e = v['data_offsets']
        out[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt[v['dtype']]).reshape(v['shape']).copy())
    return out, meta


def run(kind, groups, x, w, b):
    eps = 1e-5
    if kind == 'batch_norm':
        return F.batch_norm(x, None, None, w, b, training=True, eps=eps)
    if kind == 'layer_norm':
        return F.layer_norm(x, w.shape, w, b, eps)
    if kind == 'group_norm':
        return F.group_norm(x, groups, w, b, eps)
    if kind == 'instance_norm':
        return F.instance_norm(x, weight=w, bias=b, eps=eps)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w  # rms_norm


def errors(y, ref):
    scale = ref.pow(2).mean().sqrt()
    d = (y.double() - ref).abs() / scale
    return d.max().item(), d.mean().item()


print(f'torch {torch.__version__}')
print(f'{"case":34s} {"ng max":>9s} {"torch max":>9s} {"ng mean":>9s} {"torch mean":>10s} {"rounded max":>11s}')
for path in sorted(glob.glob(os.path.join(DIR, '*.safetensors')), key=lambda p: ('_offset' in p, p)):
    t, meta = load(path)
    kind, groups = meta['kind'], int(meta['groups'])
    x, w, b = t['x'], t['weight'], t['bias']
    with torch.no_grad():
        ref = run(kind, groups, x.double(), w.double(), b.double())
        y_torch = run(kind, groups, x, w, b)
    ng_max, ng_mean = errors(t['y'], ref)
    th_max, th_mean = errors(y_torch, ref)
    cr_max, _ = errors(ref.float(), ref)
    name = os.path.basename(path)[:-len('.safetensors')]
    print(f'{name:34s} {ng_max:9.3g} {th_max:9.3g} {ng_mean:9.3g} {th_mean:10.3g} {cr_max:11.3g}')
