"""MAC counts against hand counts (formulas written out per layer)."""

import warnings

import pytest
import torch
from torch import nn

from exitnet.torch._macs import count_macs, stage_costs


def test_conv_groups_dilation():
    # out 1x8x? : input 1x4x10x10, k=3, dilation 2, padding 0 -> 10 - 2*2 = 6 -> 6x6
    m = nn.Conv2d(4, 8, 3, dilation=2, groups=2, bias=True)
    # out elements 8*6*6 = 288, each (4/2)*3*3 = 18 MACs
    assert count_macs(m, torch.zeros(1, 4, 10, 10)) == 288 * 18
    # stride 2, padding 1: out 5x5
    m = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    assert count_macs(m, torch.zeros(2, 3, 10, 10)) == 5 * 5 * 5 * 3 * 9
    assert count_macs(m, torch.zeros(2, 3, 10, 10), per_sample=False) == 2 * 5 * 5 * 5 * 3 * 9
    m = nn.Conv1d(2, 4, 5, groups=2)  # out 4x6, each 1*5
    assert count_macs(m, torch.zeros(1, 2, 10)) == 24 * 5
    m = nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2)  # in 4x3x3=36, each 3*4
    assert count_macs(m, torch.zeros(1, 4, 3, 3)) == 36 * 3 * 4


def test_small_cnn_hand_count():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),   # 4*8*8 * 1*9 = 2304
        nn.BatchNorm2d(4),               # 256
        nn.ReLU(),                       # 256
        nn.MaxPool2d(2),                 # 4*4*4 * 4 = 256
        nn.Conv2d(4, 8, 3),              # 8*2*2 * 4*9 = 1152
        nn.GELU(),                       # 32
        nn.AdaptiveAvgPool2d(1),         # 32
        nn.Flatten(),                    # 0
        nn.Dropout(0.5),                 # 0
        nn.Linear(8, 10),                # 80
        nn.LayerNorm(10),                # 30
    )
    assert count_macs(model, torch.zeros(3, 1, 8, 8)) == 2304 + 256 + 256 + 256 + 1152 + 32 + 32 + 80 + 30
    assert model.training  # mode restored


def test_linear_leading_dims_and_avgpool():
    assert count_macs(nn.Linear(6, 4), torch.zeros(1, 5, 6)) == 5 * 4 * 6
    assert count_macs(nn.AvgPool2d(3, stride=1), torch.zeros(1, 2, 5, 5)) == 2 * 3 * 3 * 9
    assert count_macs(nn.GroupNorm(2, 4), torch.zeros(1, 4, 3, 3)) == 3 * 36


def test_stage_costs_and_cost_model_input():
    # the runtime's cost model: conv and linear MACs only (ReLU is free)
    stages = [nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()),  # 2*16*9 = 288
              nn.Sequential(nn.Conv2d(2, 2, 3, stride=2, padding=1))]   # 2*4*18 = 144
    heads = [nn.Sequential(nn.Flatten(), nn.Linear(32, 3)),            # 96
             nn.Sequential(nn.Flatten(), nn.Linear(8, 3))]              # 24
    s, h = stage_costs(stages, heads, torch.zeros(4, 1, 4, 4))
    assert s == [288, 144] and h == [96, 24]


def test_errors():
    class Weird(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w

    with pytest.raises(ValueError, match="no MAC rule"):
        count_macs(nn.Sequential(nn.Linear(3, 3), Weird()), torch.zeros(1, 3))

    class Free(nn.Module):
        def forward(self, x):
            return x

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert count_macs(nn.Sequential(nn.Linear(3, 3), Free()), torch.zeros(1, 3)) == 9
        assert any("unknown parameter-free" in str(x.message) for x in w)
    with pytest.raises(ValueError, match="heads"):
        stage_costs([nn.Identity()], [], torch.zeros(1, 3))
    with pytest.raises(ValueError, match="example_input"):
        count_macs(nn.Linear(3, 3), torch.zeros(0, 3))
    with pytest.raises(TypeError, match="module"):
        count_macs(lambda x: x, torch.zeros(1, 3))
