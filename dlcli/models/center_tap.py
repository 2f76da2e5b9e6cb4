"""Convolutions of a 1x1 feature map computed as what they are: their kernel's centre tap.

A KxK convolution with "same" zero padding (padding = dilation * (K - 1) / 2) applied to a 1x1 map
reads only its kernel's centre: every other tap meets the padding, zeros, so the output is the 1x1
convolution by weight[:, :, K//2, K//2] and the other taps' gradients are exactly zero either way.
Small images reach such maps: a ResNet-18's last stage at 32 px (`make demo`) is 1x1 after a
stride of 32. There oneDNN's backward-weights on an AVX2-only CPU has no direct kernel and falls
back to an im2col GEMM per image (x64:gemm:jit): 57 ms per 3x3 512->512 layer at batch 32 on a
2-core AMD EPYC, against 3 ms for the same layer as a 1x1 convolution; the three such layers took
170 ms of a 383 ms training step (BENCHMARKS.md, "The demo on an AVX2-only CPU").

`use_center_taps(model)` makes every Conv2d that can meet this case take the short path when it
does; the parameters (names, shapes, values) are untouched, so checkpoints and state_dicts are
the same as torchvision's. It retypes the modules in place, as torch.nn.utils.parametrize does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CenterTapConv2d(nn.Conv2d):
    """An nn.Conv2d that, on a 1x1 input, convolves with its kernel's centre alone (the same result)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A trace (dl export) keeps the general path: its graph must not hold a branch taken on one size.
        if torch.jit.is_tracing() or x.shape[-1] != 1 or x.shape[-2] != 1:
            return super().forward(x)
        kh, kw = self.kernel_size
        centre = self.weight[:, :, kh // 2 : kh // 2 + 1, kw // 2 : kw // 2 + 1]  # (out, in/groups, 1, 1)
        return F.conv2d(x, centre, self.bias, stride=1, padding=0, groups=self.groups)


def use_center_taps(model: nn.Module) -> int:
    """Retype each Conv2d with an odd kernel larger than 1x1 and "same" zero padding as CenterTapConv2d;
    returns how many. Any stride: a 1x1 map gives a 1x1 output whatever the stride."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Conv2d and _same_padding(module):
            module.__class__ = CenterTapConv2d
            count += 1
    return count


def _same_padding(conv: nn.Conv2d) -> bool:
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or conv.kernel_size == (1, 1):
        return False
    return all(k % 2 == 1 and p == d * (k - 1) // 2 for k, p, d in zip(conv.kernel_size, conv.padding, conv.dilation))
