"""Writes a small 4-exit model file and torch's reference outputs for the wheel smoke
test (run with the development environment's torch; the fresh environment has none)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from exitnet.torch import export, small_cnn_8


def main(out: Path) -> None:
    torch.manual_seed(0)
    net = small_cnn_8(num_classes=10, in_channels=1, width=8).eval()
    export(net, out / "model.exitnet", (1, 8, 8))
    x = torch.randn(64, 1, 8, 8)
    with torch.no_grad():
        logits = torch.stack(net(x)).numpy()  # (K, N, C)
    np.savez(out / "reference.npz", x=x.numpy(), logits=logits)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
