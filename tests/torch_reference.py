"""Small PyTorch EDSR / MDSR with EDSR-PyTorch's exact module tree (hence state_dict keys).

Written for the weight-import parity tests (tests/test_convert.py), after the structure
of EDSR-PyTorch ``src/model/{common,edsr,mdsr}.py``: ``sub_mean``/``add_mean`` frozen
1x1 convs, ``head`` Sequential, ``body`` Sequential of ResBlocks (each with a ``body``
Sequential conv-ReLU-conv) plus a final conv, ``tail`` = [Upsampler, conv] for EDSR;
MDSR adds ``pre_process`` (two 5x5 ResBlocks per scale) and ``upsample`` (one Upsampler
per scale) ModuleLists. Imports torch: only import it from tests that require torch.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


def conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=True)


class MeanShift(nn.Conv2d):
    """x ± rgb_range * mean as a frozen 1x1 conv (rgb_std = 1)."""

    def __init__(self, rgb_range: float, sign: float = -1.0, mean: Sequence[float] = DIV2K_MEAN):
        super().__init__(3, 3, kernel_size=1)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.bias.data = sign * rgb_range * torch.tensor(mean, dtype=torch.float32)
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    def __init__(self, n_feats: int, k: int, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            conv(n_feats, n_feats, k), nn.ReLU(True), conv(n_feats, n_feats, k)
        )
        self.res_scale = res_scale

    def forward(self, x):
        return self.body(x).mul(self.res_scale) + x


class Upsampler(nn.Sequential):
    def __init__(self, scale: int, n_feats: int):
        layers: list[nn.Module] = []
        if scale == 3:
            layers += [conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
        elif scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
        else:
            raise ValueError(scale)
        super().__init__(*layers)


class EDSR(nn.Module):
    def __init__(self, scale: int, n_resblocks: int, n_feats: int, res_scale: float = 1.0,
                 rgb_range: float = 255.0):
        super().__init__()
        self.sub_mean = MeanShift(rgb_range, -1.0)
        self.add_mean = MeanShift(rgb_range, +1.0)
        self.head = nn.Sequential(conv(3, n_feats, 3))
        self.body = nn.Sequential(
            *[ResBlock(n_feats, 3, res_scale) for _ in range(n_resblocks)],
            conv(n_feats, n_feats, 3),
        )
        self.tail = nn.Sequential(Upsampler(scale, n_feats), conv(n_feats, 3, 3))

    def forward(self, x):
        x = self.head(self.sub_mean(x))
        x = self.body(x) + x
        return self.add_mean(self.tail(x))


class MDSR(nn.Module):
    def __init__(
        self, scales: Sequence[int], n_resblocks: int, n_feats: int, rgb_range: float = 255.0
    ):
        super().__init__()
        self.scale_idx = 0
        self.sub_mean = MeanShift(rgb_range, -1.0)
        self.head = nn.Sequential(conv(3, n_feats, 3))
        self.pre_process = nn.ModuleList(
            [nn.Sequential(ResBlock(n_feats, 5), ResBlock(n_feats, 5)) for _ in scales]
        )
        self.body = nn.Sequential(
            *[ResBlock(n_feats, 3) for _ in range(n_resblocks)], conv(n_feats, n_feats, 3)
        )
        self.upsample = nn.ModuleList([Upsampler(s, n_feats) for s in scales])
        self.tail = nn.Sequential(conv(n_feats, 3, 3))
        self.add_mean = MeanShift(rgb_range, +1.0)

    def set_scale(self, scale_idx: int) -> None:
        self.scale_idx = scale_idx

    def forward(self, x):
        x = self.pre_process[self.scale_idx](self.head(self.sub_mean(x)))
        x = self.body(x) + x
        return self.add_mean(self.tail(self.upsample[self.scale_idx](x)))


def randomize(model: nn.Module, seed: int = 0, res_gain: float = 1.0) -> nn.Module:
    """Random, non-trivial weights: variance-keeping normal kernels, biases of a few grey levels.

    PyTorch's default init shrinks activations layer by layer; with these, outputs span
    tens of grey levels around the mean, so a wrong channel order or key cannot hide.
    ``res_gain`` scales each residual branch's last conv, so deep networks (real preset
    sizes) do not blow up. Mean-shift convs keep their constants.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and not isinstance(m, MeanShift):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(1.0 / fan_in))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 5.0)
        for m in model.modules():
            if isinstance(m, ResBlock):
                m.body[2].weight.mul_(res_gain)
                m.body[2].bias.mul_(res_gain)
    return model.eval()
