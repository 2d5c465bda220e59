"""Early-exit networks: a backbone cut into stages with one exit head after each stage.

An :class:`EarlyExitNet` with K exits holds K stage modules ``s_0..s_{K-1}`` and K head modules
``h_0..h_{K-1}``. Exit k computes ``h_k(s_k(...s_0(x)))``; exits are numbered from 0 (shallowest)
to K-1 (the full network).

Only layers the exitnet runtime can execute are used by the ready-made models (Conv2d, BatchNorm2d,
ReLU, MaxPool2d/AvgPool2d, AdaptiveAvgPool2d(1), Flatten, Linear and residual blocks), so they can be
exported with :func:`exitnet.torch.export` and run in the Go runtime.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

__all__ = [
    "EarlyExitNet",
    "conv_head",
    "small_cnn",
    "spatial_head",
    "small_cnn_28",
    "small_cnn_8",
    "small_resnet_32",
]


class EarlyExitNet(nn.Module):
    """A backbone cut into stages, with an exit head after every stage.

    Parameters
    ----------
    stages : sequence of nn.Module
        ``stages[k]`` maps the output of stage k-1 (or the input, for k = 0) to the features read by
        exit k and by stage k+1.
    heads : sequence of nn.Module
        ``heads[k]`` maps the features of stage k to the logits of exit k. All heads must produce the
        same number of classes.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = EarlyExitNet([nn.Linear(4, 8), nn.Linear(8, 8)], [nn.Linear(8, 3), nn.Linear(8, 3)])
    >>> [z.shape for z in net(torch.zeros(2, 4))]
    [torch.Size([2, 3]), torch.Size([2, 3])]
    >>> sorted(net.parameters_for_exit(0))
    ['heads.0.bias', 'heads.0.weight', 'stages.0.bias', 'stages.0.weight']
    """

    def __init__(self, stages: Sequence[nn.Module], heads: Sequence[nn.Module]) -> None:
        super().__init__()
        stages = list(stages)
        heads = list(heads)
        if len(stages) == 0:
            raise ValueError("stages: need at least one stage")
        if len(stages) != len(heads):
            raise ValueError(
                f"heads: {len(heads)} heads for {len(stages)} stages; need one head per stage"
            )
        for name, mods in (("stages", stages), ("heads", heads)):
            for i, m in enumerate(mods):
                if not isinstance(m, nn.Module):
                    raise TypeError(f"{name}[{i}]: expected an nn.Module, got {type(m).__name__}")
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(heads)

    @property
    def num_exits(self) -> int:
        """Number of exits K (= number of stages)."""
        return len(self.stages)

    def _check_exit(self, k: int, name: str = "k") -> int:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"{name}: expected an int exit index, got {type(k).__name__}")
        K = self.num_exits
        if k < 0:
            k += K
        if not 0 <= k < K:
            raise IndexError(f"{name}: exit index out of range for {K} exits")
        return k

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit, shallowest first: a list of K tensors of shape (N, C)."""
        return self.forward_exits(x, upto=self.num_exits - 1)

    def forward_exits(self, x: torch.Tensor, upto: Optional[int] = None) -> list[torch.Tensor]:
        """Logits of exits 0..upto; computes stages 0..upto only.

        Parameters
        ----------
        x : Tensor
            Input batch.
        upto : int, optional
            Last exit to compute (negative values count from the end). Default: the last exit.
        """
        k = self.num_exits - 1 if upto is None else self._check_exit(upto, "upto")
        outs: list[torch.Tensor] = []
        h = x
        for j in range(k + 1):
            h = self.stages[j](h)
            outs.append(self.heads[j](h))
        return outs

    def forward_exit(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Logits of exit k alone; computes stages 0..k and head k only."""
        k = self._check_exit(k)
        h = x
        for j in range(k + 1):
            h = self.stages[j](h)
        return self.heads[k](h)

    def parameters_for_exit(self, k: int) -> dict[str, nn.Parameter]:
        """The parameters exit k depends on: stages 0..k and head k.

        Names are those of :meth:`named_parameters` (``"stages.0.0.weight"``, ``"heads.2.3.bias"``).
        """
        k = self._check_exit(k)
        prefixes = tuple(f"stages.{j}." for j in range(k + 1)) + (f"heads.{k}.",)
        return {n: p for n, p in self.named_parameters() if n.startswith(prefixes)}

    @classmethod
    def from_backbone(
        cls,
        backbone: nn.Sequential,
        attach_points: Sequence[Union[int, str]],
        head_factory: Callable[[int, tuple[int, ...]], nn.Module],
        example_input: Optional[torch.Tensor] = None,
    ) -> "EarlyExitNet":
        """Cut a sequential backbone into stages and attach an exit after each cut.

        Parameters
        ----------
        backbone : nn.Sequential
            The backbone, layer by layer.
        attach_points : sequence of int or str
            Index (or child name) of the layer *after which* an exit is attached, strictly
            increasing. The last attach point must be the last layer (nothing may be left unused).
        head_factory : callable ``(k, feature_shape) -> nn.Module``
            Builds exit k's head. ``feature_shape`` is the stage output shape without the batch
            dimension when ``example_input`` is given (for example ``(32, 7, 7)``); otherwise it is
            ``(C,)`` with C the output width of the stage's last Conv2d/BatchNorm/Linear layer.
        example_input : Tensor, optional
            A batch used to infer the feature shapes (a dry run in eval mode, no gradients).
        """
        if not isinstance(backbone, nn.Sequential):
            raise TypeError(
                f"backbone: expected nn.Sequential, got {type(backbone).__name__}"
            )
        names = [n for n, _ in backbone.named_children()]
        n = len(names)
        if n == 0:
            raise ValueError("backbone: empty nn.Sequential")
        pts = list(attach_points)
        if not pts:
            raise ValueError("attach_points: need at least one attach point")
        idx: list[int] = []
        for p in pts:
            if isinstance(p, str):
                if p not in names:
                    raise ValueError(f"attach_points: no layer named {p!r} in backbone (layers: {names})")
                idx.append(names.index(p))
            elif isinstance(p, int) and not isinstance(p, bool):
                q = p + n if p < 0 else p
                if not 0 <= q < n:
                    raise ValueError(f"attach_points: index {p} out of range for {n} layers")
                idx.append(q)
            else:
                raise TypeError(f"attach_points: expected int or str, got {type(p).__name__}")
        if any(b <= a for a, b in zip(idx, idx[1:])):
            raise ValueError(f"attach_points: must be strictly increasing, got {pts}")
        if idx[-1] != n - 1:
            raise ValueError(
                f"attach_points: the last attach point must be the last layer ({n - 1}), "
                f"got {idx[-1]}; layers after it would never run"
            )
        layers = list(backbone.children())
        stages: list[nn.Module] = []
        start = 0
        for end in idx:
            stages.append(nn.Sequential(*layers[start : end + 1]))
            start = end + 1
        shapes: list[tuple[int, ...]] = []
        if example_input is not None:
            was = backbone.training
            backbone.eval()
            with torch.no_grad():
                h = example_input
                for s in stages:
                    h = s(h)
                    shapes.append(tuple(h.shape[1:]))
            backbone.train(was)
        else:
            for k, s in enumerate(stages):
                width = _out_width(s)
                if width is None:
                    raise ValueError(
                        f"attach_points: cannot infer the width of stage {k}; pass example_input"
                    )
                shapes.append((width,))
        heads = [head_factory(k, shapes[k]) for k in range(len(stages))]
        return cls(stages, heads)

    def extra_repr(self) -> str:
        return f"num_exits={self.num_exits}"


def _out_width(module: nn.Module) -> Optional[int]:
    width = None
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            width = m.out_channels
        elif isinstance(m, nn.BatchNorm2d) or isinstance(m, nn.BatchNorm1d):
            width = m.num_features
        elif isinstance(m, nn.Linear):
            width = m.out_features
    return width


def conv_head(channels: int, num_classes: int, hidden: Optional[int] = None) -> nn.Sequential:
    """An exit head for (N, channels, H, W) features.

    With ``hidden`` (an int): 3×3 stride-2 conv to ``hidden`` channels, BatchNorm, ReLU, global
    average pool, linear. Without: global average pool and linear.
    """
    if hidden is None:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(hidden, num_classes),
    )


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def _check_pos(name: str, v: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")


def spatial_head(channels: int, size: int, num_classes: int, hidden: Optional[int] = None) -> nn.Sequential:
    """An exit head that keeps coarse spatial layout, for (N, channels, size, size) features.

    ``[MaxPool2d(2) if size ≥ 16]`` → conv3×3 stride 2 (→ ``hidden`` channels, default
    max(8, channels // 2)) → BatchNorm → ReLU → Flatten → Linear. Early features need their layout:
    a global-average-pool head on a first conv stage is barely better than chance.
    """
    _check_pos("channels", channels)
    _check_pos("size", size)
    h = hidden if hidden is not None else max(8, channels // 2)
    layers: list[nn.Module] = []
    s = size
    if s >= 16:
        layers.append(nn.MaxPool2d(2))
        s = s // 2
    layers += [
        nn.Conv2d(channels, h, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(h),
        nn.ReLU(),
        nn.Flatten(),
    ]
    s = (s + 1) // 2
    layers.append(nn.Linear(h * s * s, num_classes))
    return nn.Sequential(*layers)


def small_cnn(
    num_classes: int = 10, in_channels: int = 1, width: int = 16, input_size: int = 28
) -> EarlyExitNet:
    """A 4-exit CNN for small square images of side ``input_size`` (made for 28×28 and 8×8).

    Stages (w = ``width``)::

        s0: conv3×3(in→w)  BN ReLU                    size s
        s1: maxpool2  conv3×3(w→2w)  BN ReLU          s/2
        s2: maxpool2  conv3×3(2w→4w) BN ReLU          s/4
        s3: maxpool2  conv3×3(4w→4w) BN ReLU          s/8   (pools round up: ceil_mode)

    Every exit is a :func:`spatial_head` (a strided conv, then a linear layer over the flattened
    coarse map: early features need their layout; a global-average-pool head on the first stage
    is barely better than chance, and on the last stage it was weaker than exits 1-2 on
    Fashion-MNIST). Built for one input size: the heads flatten spatial features.
    """
    _check_pos("num_classes", num_classes)
    _check_pos("in_channels", in_channels)
    _check_pos("width", width)
    _check_pos("input_size", input_size)
    w = width
    chans = [w, 2 * w, 4 * w, 4 * w]
    sizes = [input_size]
    for _ in range(3):
        sizes.append(-(-sizes[-1] // 2))
    stages: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(in_channels, chans[0]))]
    for k in range(1, 4):
        stages.append(
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), *_conv_bn_relu(chans[k - 1], chans[k]))
        )
    heads: list[nn.Module] = [spatial_head(chans[k], sizes[k], num_classes) for k in range(4)]
    return EarlyExitNet(stages, heads)


def small_cnn_28(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> EarlyExitNet:
    """The 4-exit :func:`small_cnn` for 28×28 inputs (MNIST, Fashion-MNIST): 28→14→7→4."""
    return small_cnn(num_classes, in_channels, width, input_size=28)


def small_cnn_8(num_classes: int = 10, in_channels: int = 1, width: int = 8) -> EarlyExitNet:
    """The 4-exit :func:`small_cnn` for 8×8 inputs (scikit-learn digits): 8→4→2→1."""
    return small_cnn(num_classes, in_channels, width, input_size=8)


def small_resnet_32(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> EarlyExitNet:
    """A 4-exit residual network for 32×32 inputs (CIFAR-10/100).

    Stem conv3×3 + BN + ReLU, then four stages of one residual block each (widths w, 2w, 4w, 8w; the
    last three downsample by a stride-2 conv with a 1×1 projection shortcut): 32→16→8→4. Exits
    0..2 use :func:`conv_head`; the last exit is global average pool + linear. Residual blocks are
    :class:`exitnet.torch.ResidualBlock` so the model exports to the runtime.
    """
    _check_pos("num_classes", num_classes)
    _check_pos("in_channels", in_channels)
    _check_pos("width", width)
    from ._export import ResidualBlock

    def block(cin: int, cout: int, stride: int) -> nn.Module:
        main = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        shortcut = None
        if stride != 1 or cin != cout:
            shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        return ResidualBlock(main, shortcut, relu=True)

    w = width
    chans = [w, 2 * w, 4 * w, 8 * w]
    stages: list[nn.Module] = [
        nn.Sequential(*_conv_bn_relu(in_channels, w), block(w, chans[0], 1))
    ]
    for k in range(1, 4):
        stages.append(nn.Sequential(block(chans[k - 1], chans[k], 2)))
    heads: list[nn.Module] = [conv_head(chans[k], num_classes, chans[k]) for k in range(3)]
    heads.append(conv_head(chans[3], num_classes))
    return EarlyExitNet(stages, heads)
