"""Convolutions whose output is a single pixel, computed as the product they are.

When a convolution's output map is 1x1 and its one window covers the whole input, every output channel
is a dot product of the input with the part of the kernel that lies over it; the rest of the kernel
meets the zero padding, so it changes nothing and its gradient is exactly zero either way. Such a
convolution equals the unpadded convolution by that part of the kernel (weight[:, :, p:p+H, p:p+W]).
Small images reach these layers: a ResNet-18's last stage at 32 px (`make demo`) runs on 2x2 and 1x1
maps. There, on an AVX2-only CPU, oneDNN has no direct backward-weights kernel and falls back to an
im2col GEMM per image (x64:gemm:jit): 57 ms per 3x3 512->512 layer on a 1x1 map at batch 32 on a 2-core
AMD EPYC, against 3 ms for the same product as a 1x1 convolution, and 21 ms for the stride-2 layer from
the 2x2 map; these four layers took 190 ms of a 383 ms training step (BENCHMARKS.md, "The demo on an
AVX2-only CPU").

`use_window_convs(model)` makes every Conv2d take the short path when its output is one pixel; the
parameters (names, shapes, values) are untouched, so checkpoints and state_dicts stay torchvision's. It
retypes the modules in place, as torch.nn.utils.parametrize does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WindowConv2d(nn.Conv2d):
    """An nn.Conv2d that, where its output is one pixel, convolves with the kernel's part over the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A trace (dl export) keeps the general path: its graph must not hold a branch taken on one size.
        if torch.jit.is_tracing() or not self._one_window(x.shape[-2], x.shape[-1]):
            return super().forward(x)
        (ph, pw), (h, w) = self.padding, x.shape[-2:]
        over_input = self.weight[:, :, ph : ph + h, pw : pw + w]  # (out, in/groups, H, W)
        return F.conv2d(x, over_input, self.bias, stride=1, padding=0, groups=self.groups)

    def _one_window(self, h: int, w: int) -> bool:
        """Whether the output is 1x1 and its window holds all of the (h, w) input."""
        for size, k, p, s in zip((h, w), self.kernel_size, self.padding, self.stride):
            if (size + 2 * p - k) // s + 1 != 1 or size > k - p:
                return False
        return True


def use_window_convs(model: nn.Module) -> int:
    """Retype each zero-padded, undilated Conv2d larger than 1x1 as WindowConv2d; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Conv2d and _eligible(module):
            module.__class__ = WindowConv2d
            count += 1
    return count


def _eligible(conv: nn.Conv2d) -> bool:
    return (
        conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.dilation == (1, 1)
        and conv.kernel_size != (1, 1)
    )
