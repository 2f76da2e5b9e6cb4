"""The Gatys et al. library: neural style transfer as in Gatys, Ecker & Bethge, "Image Style
Transfer Using Convolutional Neural Networks" (CVPR 2016): an image is optimised until its VGG
features match a content image's and its Gram matrices match a style image's.

    dl stylize examples/scene.jpg examples/stripes.jpg -o out.jpg          # dlcli/stylize.py calls stylize()
    dl train configs/style.yaml                                            # dlcli/tasks/style.py, one per pair

The losses, with F_l the N_l x M_l matrix of layer l's responses to the image (N_l channels,
M_l = height x width positions), P_l the content image's and A_l the style image's Gram matrix:

    L_content = sum_l c_l * 1/2 sum_ij (F_l - P_l)_ij^2                    paper eq. (1)
    G_l       = F_l F_l^T                      (N_l x N_l)                  paper eq. (3)
    E_l       = 1 / (4 N_l^2 M_l^2) sum_ij (G_l - A_l)_ij^2                 paper eq. (4)
    L_style   = sum_l w_l E_l                                               paper eq. (5)
    L_total   = alpha L_content + beta L_style + gamma TV                   paper eq. (7) + TV

The pieces, top to bottom: images as tensors (PIL <-> (1, 3, H, W), RGB <-> YIQ), the losses, and
the optimisation (`stylize`). Only nn/tensor code: the image files, the feature network's weights
and the flags are dlcli/stylize.py's, the grid task is dlcli/tasks/style.py. The VGG feature module
is models/vgg_features.py; the settings (StyleModel, StyleOptions) are in tasks/style_config.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlcli.console import Logger
from dlcli.errors import DlError
from dlcli.models.vgg_features import VGGFeatures
from dlcli.runtime import Runtime

if TYPE_CHECKING:  # annotations only: the library does not import the task layer
    from dlcli.tasks.style_config import StyleModel, StyleOptions


# --------------------------------------------------------------------------- images as tensors


def image_size_for(image: Any, long_side: int) -> tuple[int, int]:
    """(width, height) with the long side `long_side` and the aspect ratio kept."""
    w, h = image.size
    scale = long_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def to_tensor(image: Any, size: tuple[int, int]) -> torch.Tensor:
    """PIL image resized to `size` (w, h) -> (1, 3, h, w) float in [0, 1]."""
    from PIL import Image

    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return pixels.permute(2, 0, 1).unsqueeze(0).float().div_(255).contiguous()


def to_pil(image: torch.Tensor) -> Any:
    """(1, 3, H, W) -> an RGB PIL image; values outside [0, 1] are clipped here, not during the optimisation."""
    from PIL import Image

    pixels = image.detach()[0].float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(pixels, "RGB")


# YIQ (NTSC): Y is the luminance, I and Q the colour. Gatys et al., "Preserving Color in Neural
# Artistic Style Transfer" (2016), transfer the style on Y only and keep the content's I and Q.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) RGB -> (1, 3, H, W) YIQ."""
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YIQ.to(image), image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB_TO_YIQ).to(image), image)


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """The style's luminance shifted and scaled to the content's mean and std (the colour paper's eq. 1)."""
    return (style_y - style_y.mean()) * (content_y.std() / style_y.std().clamp_min(1e-8)) + content_y.mean()


# --------------------------------------------------------------------------- losses
# Everything here runs in fp32, outside autocast: a Gram matrix sums M_l products (65,536 of
# them per entry at conv1_1 for 256 px), far beyond what bf16/fp16 accumulate faithfully.


def gram(features: torch.Tensor) -> torch.Tensor:
    """G = F F^T of the N x M feature matrix (paper eq. 3). features (1, N, H, W) -> (N, N), M = H W."""
    n = features.shape[1]
    if features.is_contiguous(memory_format=torch.channels_last):
        f_t = features.float().permute(0, 2, 3, 1).reshape(-1, n)  # F^T: M_l x N_l, a view of NHWC memory
        return f_t.T @ f_t
    f = features.float().reshape(n, -1)  # F: N_l x M_l
    return f @ f.T


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1/2 sum (F - P)^2: paper eq. (1); the 1/2 makes its gradient (F - P) where F > 0 (eq. 2)."""
    return 0.5 * (features.float() - target).pow(2).sum()


def layer_style_loss(g: torch.Tensor, a: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """E_l = 1/(4 N_l^2 M_l^2) sum (G - A)^2: paper eq. (4). The 1/4 cancels the 2 (twice, since G
    is quadratic in F) of the gradient, eq. (6); 1/(N^2 M^2) puts layers of every size on one scale."""
    return (g - a).pow(2).sum() / (4.0 * n**2 * m**2)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: sum of squared differences of neighbouring pixels, across and down.

    Not in the 2016 paper: the smoothness prior of Mahendran & Vedaldi (2015, beta = 2), as
    Johnson's neural-style uses it, here on pixels in [0, 1].
    """
    return (image[..., 1:, :] - image[..., :-1, :]).pow(2).sum() + (image[..., :, 1:] - image[..., :, :-1]).pow(2).sum()


@dataclass
class Targets:
    """What the image's features are compared with, at one output size."""

    content: dict[str, torch.Tensor]  # layer -> P_l (1, N, H, W)
    style: dict[str, torch.Tensor]  # layer -> A_l (N, N)


def make_targets(
    features: VGGFeatures,
    model: StyleModel,
    content: torch.Tensor,
    styles: list[torch.Tensor],
    blend: list[float],
    runtime: Runtime,
) -> Targets:
    """P_l of the content image and A_l = sum_k b_k A_l^(k) of the styles (neural-style's blend of Grams).

    A style image of another size than the output (aspect ratio, style_scale) has another M_l;
    its Gram matrix, a sum over positions, is scaled by M_l(output) / M_l(style) so that G_l and
    A_l sum over as many positions. For equal sizes the factor is 1: the paper's A_l exactly.
    """
    with torch.no_grad():
        content_feats = _features(features, content, runtime)
        p = {name: content_feats[name].float() for name in model.content_layers}
        a: dict[str, torch.Tensor] = {}
        for style, weight in zip(styles, blend, strict=True):
            feats = _features(features, style, runtime)
            for name in model.style_layers:
                m_out = content_feats[name].shape[2] * content_feats[name].shape[3]
                m_style = feats[name].shape[2] * feats[name].shape[3]
                a[name] = a.get(name, 0) + weight * gram(feats[name]) * (m_out / m_style)
    return Targets(p, a)


def _features(features: VGGFeatures, image: torch.Tensor, runtime: Runtime) -> dict[str, torch.Tensor]:
    with runtime.autocast():  # bf16 convs on a GPU; the losses below leave autocast
        return features(image.expand(-1, 3, -1, -1))  # a luminance image (1 channel) is seen as grey


def losses(
    features: VGGFeatures,
    image: torch.Tensor,
    targets: Targets,
    model: StyleModel,
    opts: StyleOptions,
    runtime: Runtime,
) -> dict[str, torch.Tensor]:
    """{"content", "style", "tv": the unweighted losses, "total": alpha L_c + beta L_s + gamma TV}."""
    feats = _features(features, image, runtime)
    with torch.autocast(runtime.device.type, enabled=False):
        l_content = sum(
            w * content_loss(feats[name], targets.content[name]) for name, w in model.content_layers.items()
        )
        l_style = image.new_zeros(())
        for name, w in model.style_layers.items():
            f = feats[name]
            n, m = f.shape[1], f.shape[2] * f.shape[3]
            l_style = l_style + w * layer_style_loss(gram(f), targets.style[name], n, m)
        l_tv = tv_loss(image.float())
        total = opts.content_weight * l_content + opts.style_weight * l_style + opts.tv_weight * l_tv
    return {"content": l_content, "style": l_style, "tv": l_tv, "total": total}


# --------------------------------------------------------------------------- optimisation


@dataclass
class Result:
    image: Any  # PIL RGB
    steps: int  # loss evaluations, all scales together
    seconds: float
    losses: dict[str, float]  # at the final image
    history: list[dict[str, float]] = field(default_factory=list)  # every evaluation, in order


def stylize(
    content: Any,
    styles: list[Any],
    features: VGGFeatures,
    model: StyleModel,
    opts: StyleOptions,
    runtime: Runtime,
    *,
    blend: list[float] | None = None,
    seed: int = 0,
    logger: Logger | None = None,
    on_save: Callable[[int, Any], None] | None = None,
) -> Result:
    """Stylize a content image (PIL) with one or more style images; coarse to fine over opts.sizes().

    `on_save(evaluations, image)` is called every opts.save_every evaluations.
    """
    started = time.perf_counter()
    logger = logger or Logger(quiet=True)
    blend = normalised_blend(blend, len(styles))
    sizes = opts.sizes()
    device = runtime.device
    generator = torch.Generator().manual_seed(seed)
    history: list[torch.Tensor] = []
    bar = logger.bar(opts.steps * len(sizes), "stylize", unit="eval")
    image: torch.Tensor | None = None
    problem: _Problem | None = None
    final: dict[str, torch.Tensor] = {}
    try:
        for size in sizes:
            problem = _Problem.at(size, content, styles, blend, features, model, opts, runtime)
            image = problem.start(image, opts.init, generator).to(device).requires_grad_(True)

            def objective(x: torch.Tensor) -> dict[str, torch.Tensor]:
                return losses(features, x, problem.targets, model, opts, runtime)

            def on_eval(values: dict[str, torch.Tensor], x: torch.Tensor) -> None:
                history.append(torch.stack([values[k].detach() for k in ("content", "style", "tv", "total")]))
                evals = len(history)
                bar.update(1)
                if evals % 10 == 0 or evals == bar.total:
                    c, s, v, _ = history[-1].tolist()
                    bar.set_postfix(content=f"{c:.3g}", style=f"{s:.3g}", tv=f"{v:.3g}", refresh=False)
                if opts.save_every and on_save is not None and evals % opts.save_every == 0:
                    on_save(evals, problem.to_rgb(x))

            final = optimise(image, objective, on_eval, opts)
            image = image.detach()
    except KeyboardInterrupt:
        if image is not None and problem is not None and on_save is not None:
            on_save(len(history), problem.to_rgb(image.detach()))
        raise
    finally:
        bar.close()
    final_losses = {k: float(v) for k, v in final.items()}
    rows = torch.stack(history).tolist() if history else []
    return Result(
        image=problem.to_rgb(image),
        steps=len(history),
        seconds=time.perf_counter() - started,
        losses=final_losses,
        history=[dict(zip(("content", "style", "tv", "total"), row, strict=True)) for row in rows],
    )


class _BudgetSpent(Exception):
    """Raised by the L-BFGS closure when a line search wants more evaluations than --steps allows."""


def optimise(
    image: torch.Tensor,
    objective: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    on_eval: Callable[[dict[str, torch.Tensor], torch.Tensor], None],
    opts: StyleOptions,
) -> dict[str, torch.Tensor]:
    """Run exactly opts.steps loss evaluations on `image` in place; return the losses of the result.

    L-BFGS (history 100, as neural-style's) runs with torch's strong-Wolfe line search. Without
    one, as neural-style and the PyTorch tutorial run it, the second step is a quasi-Newton step
    from a single, tiny first step and can overshoot by many orders of magnitude; on one of the 12
    pairs of the README's grid the loss jumped to 1e17 and L-BFGS then crept along for the rest of
    the run. The line search makes an evaluation or two more in such iterations and usually none.
    An evaluation is one closure call, line-search trials included; when the budget runs out inside
    a line search, the closure stops it. The result is the evaluated image with the lowest total
    (for an undisturbed iteration, the point it accepted). The tolerances are 0: no early stop.
    Adam: one evaluation per step; the result is the image after the last step.
    """
    if opts.optimizer == "lbfgs":
        optimizer = torch.optim.LBFGS(
            [image],
            lr=opts.step_size(),
            max_iter=opts.steps,
            max_eval=opts.steps,
            tolerance_grad=0.0,
            tolerance_change=0.0,
            history_size=100,
            line_search_fn="strong_wolfe",
        )
        evals = 0
        best: dict[str, torch.Tensor] = {}
        best_image = image.detach().clone()

        def closure() -> torch.Tensor:
            nonlocal evals
            if evals == opts.steps:
                raise _BudgetSpent
            evals += 1
            optimizer.zero_grad(set_to_none=False)
            values = objective(image)
            values["total"].backward()
            on_eval(values, image)
            if not best or bool(values["total"] < best["total"]):  # L-BFGS syncs on the loss anyway
                best.update({k: v.detach() for k, v in values.items()})
                best_image.copy_(image.detach())
            return values["total"]

        try:
            optimizer.step(closure)
        except _BudgetSpent:
            pass
        with torch.no_grad():
            image.copy_(best_image)
        return best
    optimizer = torch.optim.Adam([image], lr=opts.step_size())
    for _ in range(opts.steps):
        optimizer.zero_grad(set_to_none=True)
        values = objective(image)
        values["total"].backward()
        on_eval(values, image)
        optimizer.step()
    with torch.no_grad():  # the losses of the image as it ends, not as it was before the last step
        return {k: v.detach() for k, v in objective(image).items()}


def normalised_blend(blend: list[float] | None, n_styles: int) -> list[float]:
    """Blend weights summing to 1 (equal when not given)."""
    if blend is None:
        return [1.0 / n_styles] * n_styles
    if len(blend) != n_styles:
        raise DlError(f"--style-blend has {len(blend)} weights for {n_styles} style images: give one per style image.")
    if any(w < 0 for w in blend) or sum(blend) <= 0:
        raise DlError(f"--style-blend weights must be >= 0 and not all 0, got {','.join(map(str, blend))}.")
    total = sum(blend)
    return [w / total for w in blend]


@dataclass
class _Problem:
    """One scale: the targets, the content at this size, and how the optimised image maps to RGB."""

    targets: Targets
    content: torch.Tensor  # (1, 3, H, W) RGB
    first_style: torch.Tensor  # (1, 3, H, W) at the content's size, for init=style
    preserve_color: bool

    @classmethod
    def at(cls, size, content, styles, blend, features, model, opts, runtime) -> _Problem:
        device = runtime.device
        out_size = image_size_for(content, size)
        _check_size(out_size, features, f"The content image at {size} px", "Give a larger --size (or --scales).")
        style_sizes = [image_size_for(s, round(size * opts.style_scale)) for s in styles]
        for style_size in style_sizes:
            _check_size(
                style_size, features, f"A style image at {size} x {opts.style_scale} px", "Give a larger --style-scale."
            )
        content_t = to_tensor(content, out_size).to(device)
        style_ts = [to_tensor(s, style_size).to(device) for s, style_size in zip(styles, style_sizes, strict=True)]
        first_style = to_tensor(styles[0], out_size).to(device)
        if opts.preserve_color:
            # Luminance only: the content's Y, and each style's Y matched to its mean and std.
            content_y = rgb_to_yiq(content_t)[:, :1]
            style_ts = [match_luminance(rgb_to_yiq(s)[:, :1], content_y) for s in style_ts]
            first_style = match_luminance(rgb_to_yiq(first_style)[:, :1], content_y)
            targets = make_targets(features, model, content_y, style_ts, blend, runtime)
        else:
            targets = make_targets(features, model, content_t, style_ts, blend, runtime)
        return cls(targets, content_t, first_style, opts.preserve_color)

    def start(self, previous: torch.Tensor | None, init: str, generator: torch.Generator) -> torch.Tensor:
        """The image to optimise: the previous scale's, upsampled, or the chosen initialisation."""
        h, w = self.content.shape[2:]
        if previous is not None:
            return F.interpolate(previous, size=(h, w), mode="bilinear", align_corners=False).detach().contiguous()
        channels = 1 if self.preserve_color else 3
        if init == "noise":  # the paper's white noise
            return torch.rand((1, channels, h, w), generator=generator)
        if init == "style":
            return self.first_style.detach().clone(memory_format=torch.contiguous_format)
        start = rgb_to_yiq(self.content)[:, :1] if self.preserve_color else self.content
        return start.detach().clone(memory_format=torch.contiguous_format)

    def to_rgb(self, image: torch.Tensor) -> Any:
        """The optimised image as a PIL RGB image (luminance + the content's colours with preserve_color)."""
        image = image.detach().float()
        if self.preserve_color:
            yiq = rgb_to_yiq(self.content)
            image = yiq_to_rgb(torch.cat([image, yiq[:, 1:]], dim=1))
        return to_pil(image)


def _check_size(size: tuple[int, int], features: VGGFeatures, what: str, fix: str) -> None:
    pools = sum(1 for m in features.layers if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)))
    smallest = 2**pools
    if min(size) < smallest:
        raise DlError(
            f"{what} comes to {size[0]}x{size[1]} px: too small for the deepest layer, after {pools} poolings "
            f"(each side must be at least {smallest} px). {fix}"
        )
