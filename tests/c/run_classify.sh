#!/usr/bin/env bash
# Builds examples/classify.c against the installed library (pkg-config), writes a
# model and test images with Python, runs the example and checks its accuracy and
# exit histogram against exitnet.runtime (Python) on the same data.
#
# Run by `make test-c` (which exports PKG_CONFIG_PATH / LD_LIBRARY_PATH of the staged
# install and PY). Data: Fashion-MNIST from exitnet.data.data_root() ($EXITNET_DATA/fashion-mnist,
# else /usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist), else scikit-learn's digits.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$root/.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gcc -std=c99 -Wall -Wextra -Werror -O2 -o "$tmp/classify" "$root/examples/classify.c" \
  $(pkg-config --cflags --libs exitnet) -lm

PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$tmp" <<'PYEOF'
import gzip, os, sys
import numpy as np, torch
from torch import nn
from exitnet.runtime import Model
from exitnet.torch import EarlyExitNet
from exitnet.torch._export import export

tmp = sys.argv[1]
from exitnet import data
root = data.data_root("fashion-mnist")  # $EXITNET_DATA/fashion-mnist or Debian's dataset-fashion-mnist

def idx(name):
    with gzip.open(os.path.join(root, name)) as f:
        b = f.read()
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(b[3])]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * b[3]).reshape(dims)

if data.fashion_mnist_available() and os.path.exists(os.path.join(root, "t10k-images-idx3-ubyte.gz")):
    norm = lambda a: ((a.astype(np.float32) / 255 - 0.286) / 0.353)[:, None]
    xtr, ytr = norm(idx("train-images-idx3-ubyte.gz")[:8000]), idx("train-labels-idx1-ubyte.gz")[:8000]
    xte, yte = norm(idx("t10k-images-idx3-ubyte.gz")), idx("t10k-labels-idx1-ubyte.gz")
else:
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images.astype(np.float32) / 16)[:, None]
    xtr, ytr, xte, yte = x[:1300], d.target[:1300], x[1300:], d.target[1300:]
side = xtr.shape[-1]
torch.manual_seed(0)
s1, s2 = (side + 1) // 2, (side + 3) // 4
net = EarlyExitNet(
    [nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)),
     nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True))],
    [nn.Sequential(nn.Flatten(), nn.Linear(16 * s1 * s1, 10)), nn.Sequential(nn.Flatten(), nn.Linear(32 * s2 * s2, 10))])
opt = torch.optim.Adam(net.parameters(), 3e-3)
X, Y = torch.from_numpy(xtr), torch.from_numpy(ytr.astype(np.int64))
net.train()
for i in range(0, len(X), 100):
    loss = sum(nn.functional.cross_entropy(z, Y[i:i + 100]) for z in net(X[i:i + 100]))
    opt.zero_grad(); loss.backward(); opt.step()
net.eval()
export(net, os.path.join(tmp, "model.exitnet"), (1, side, side))
# test images as raw float32 [N][C][H][W] and int32 labels
np.ascontiguousarray(xte, dtype=np.float32).tofile(os.path.join(tmp, "images.f32"))
yte.astype(np.int32).tofile(os.path.join(tmp, "labels.i32"))
with Model(os.path.join(tmp, "model.exitnet")) as m:
    out = m.predict(xte, thresholds=0.9, output="numpy")
acc = 100 * (out["prediction"] == yte).mean()
hist = np.bincount(out["exit"], minlength=2)
with open(os.path.join(tmp, "expected.txt"), "w") as f:
    f.write(f"accuracy {acc:.2f}%\nexit histogram {' '.join(map(str, hist))}\n")
PYEOF

"$tmp/classify" "$tmp/model.exitnet" "$tmp/images.f32" "$tmp/labels.i32" 0.9 | tee "$tmp/out.txt"
fail=0
while IFS= read -r line; do
  if ! grep -qxF "$line" "$tmp/out.txt"; then
    echo "FAIL: expected '$line' (exitnet.runtime from Python on the same data)" >&2
    fail=1
  fi
done < "$tmp/expected.txt"
[ $fail -eq 0 ] && echo "1 passed, 0 failed (classify matches exitnet.runtime)"
exit $fail
