"""Neural style transfer as in Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional
Neural Networks" (CVPR 2016): an image is optimised until its VGG features match a content
image's and its Gram matrices match a style image's.

    dl stylize examples/scene.jpg examples/stripes.jpg -o out.jpg          # VGG19 ImageNet features, L-BFGS
    dl stylize examples/scene.jpg examples/stripes.jpg --features random   # offline: a fixed random VGG19
    dl stylize examples/scene.jpg examples/stripes.jpg examples/swirls.jpg --style-blend 0.7,0.3
    dl train configs/style.yaml                                            # a grid of contents x styles

The losses, with F_l the N_l x M_l matrix of layer l's responses to the image (N_l channels,
M_l = height x width positions), P_l the content image's and A_l the style image's Gram matrix:

    L_content = sum_l c_l * 1/2 sum_ij (F_l - P_l)_ij^2                    paper eq. (1)
    G_l       = F_l F_l^T                      (N_l x N_l)                  paper eq. (3)
    E_l       = 1 / (4 N_l^2 M_l^2) sum_ij (G_l - A_l)_ij^2                 paper eq. (4)
    L_style   = sum_l w_l E_l                                               paper eq. (5)
    L_total   = alpha L_content + beta L_style + gamma TV                   paper eq. (7) + TV

The pieces, top to bottom: images in and out, the feature network, the losses, the optimisation
(`stylize`), and the `style` task that `dl train` runs. The settings (pydantic sections shared by
`dl stylize` and the recipe) are in style_config.py.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlcli.console import Logger
from dlcli.errors import DlError
from dlcli.models.vgg_features import VGGFeatures
from dlcli.runner import Job
from dlcli.runtime import Runtime

# The recipe schema is in a torch-free module, for `dl config show`; the task's surface re-exports it.
from dlcli.tasks.style_config import (  # noqa: F401
    CONTENT_LAYERS,
    STYLE_LAYERS,
    Config,
    StyleData,
    StyleModel,
    StyleOptions,
    StyleTrain,
)

NAME = "style"
RUN_KIND = "a style-transfer grid"  # in the error for a run of another task

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


# --------------------------------------------------------------------------- images


def read_image(path: Path) -> Any:
    """An RGB PIL image, turned upright by its EXIF orientation; a DlError for anything else."""
    from dlcli.data import imagecheck

    path = Path(path)
    if not path.is_file():
        raise DlError(f"{path}: no such image file. Give the path of a JPEG/PNG/... image.")
    return imagecheck.read_image(path)


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


def image_format(path: Path) -> str:
    """Pillow's format name for a file name's extension (.jpg -> JPEG), if Pillow can write it."""
    from PIL import Image

    ext = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise DlError(f"Cannot write '{path}': unknown image extension '{ext}'. Use .png, .jpg, .webp, .bmp or .tif.")
    return fmt


def save_image(image: Any, path: Path) -> None:
    """Write a PIL image in the format its extension names (.jpg, .png, .webp, ...)."""
    path = Path(path)
    fmt = image_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))


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


# --------------------------------------------------------------------------- features


def load_features(model: StyleModel, logger: Logger) -> VGGFeatures:
    """The VGG feature network that `model.features` names, cut after its deepest layer."""
    spec = model.features
    if spec == "random":
        logger.warn(
            "features: random: a VGG19 with fixed random weights, not ImageNet's: the style comes out cruder. "
            "Use --features imagenet (torchvision's VGG19 weights) where they can be had."
        )
        state = None
    elif spec == "imagenet":
        state = imagenet_vgg19_state_dict()
    else:
        state = read_weights_file(Path(spec))
    try:
        return VGGFeatures.from_state_dict(state, [*model.content_layers, *model.style_layers], model.pooling)
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise DlError(f"features {spec}: {first}") from None


def imagenet_vgg19_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's VGG19 from the torch hub cache; when it is absent and cannot be downloaded (or
    is unreadable), the DlError naming the file also offers the random network, which needs nothing."""
    from dlcli.data.download import load_torchvision_state_dict

    try:
        return load_torchvision_state_dict("vgg19")
    except DlError as e:
        raise DlError(
            f"{str(e).rstrip('.')}; or do without them: --features random (model.features=random in a recipe) is a "
            "VGG19 with fixed random weights that needs no download; the style comes out cruder."
        ) from None


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision VGG state_dict, or the model of a dl checkpoint (a `dl train` vgg run)."""
    from dlcli import checkpoint

    if not path.is_file():
        raise DlError(
            f"features: {path} does not exist. Give imagenet, random, a torchvision VGG state_dict (.pth) "
            "or a dl checkpoint of a vgg run (runs/NAME/checkpoints/best.pt)."
        )
    state, ckpt = checkpoint.read_state_dict(path, "features")
    if ckpt is not None:
        arch = (ckpt.get("config") or {}).get("model", {}).get("arch", "")
        if not str(arch).startswith("vgg"):
            raise DlError(
                f"features: {path} is a checkpoint of a {arch or ckpt.get('task')} run; style transfer needs a VGG."
            )
    return state


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


# --------------------------------------------------------------------------- dl stylize


def settings_from_flags(flags: dict[str, Any]) -> tuple[StyleModel, StyleOptions]:
    """`dl stylize`'s flags (None: not given) -> the same sections a recipe has; errors name the flag."""
    from pydantic import ValidationError

    given = {k: v for k, v in flags.items() if v is not None}
    for key in ("content_layers", "style_layers"):
        if key in given:
            given[key] = parse_layers(given[key], key)
    if "scales" in given:
        given["scales"] = parse_numbers(given["scales"], "--scales", int)
    model_keys = set(StyleModel.model_fields)
    try:
        model = StyleModel(**{k: v for k, v in given.items() if k in model_keys})
        opts = StyleOptions(**{k: v for k, v in given.items() if k not in model_keys})
    except ValidationError as e:
        item = e.errors()[0]
        flag = "--" + str(item["loc"][0]).replace("_", "-") if item["loc"] else "a flag"
        raise DlError(f"{flag}: {item['msg']} (got {item.get('input')!r}).") from None
    if "scales" in given and "size" not in given:
        opts.size = opts.scales[-1]  # --scales 256,512,1024 alone: the output is 1024 px
    return model, opts


def parse_layers(text: str, flag: str) -> dict[str, float]:
    """'conv1_1,conv2_1:0.5' -> {conv1_1: 0.5, conv2_1: 0.5}: layers without a weight share what is
    left to 1 equally ('conv1_1,conv2_1,conv3_1,conv4_1,conv5_1' gives the paper's w_l = 1/5)."""
    named: dict[str, float | None] = {}
    for part in (p.strip() for p in text.split(",")):
        name, _, weight = part.partition(":")
        try:
            named[name.strip()] = float(weight) if weight else None
        except ValueError:
            raise DlError(f"--{flag.replace('_', '-')}: '{part}' is not LAYER or LAYER:WEIGHT (conv4_2:1.0).") from None
    unweighted = [n for n, w in named.items() if w is None]
    rest = max(0.0, 1.0 - sum(w for w in named.values() if w is not None))
    return {n: (w if w is not None else (rest or 1.0) / len(unweighted)) for n, w in named.items()}


def parse_numbers(text: str, flag: str, kind: type = float) -> list:
    try:
        return [kind(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise DlError(f"{flag}: '{text}' is not a comma-separated list of numbers (e.g. 0.7,0.3).") from None


def stylize_files(
    content: Path,
    styles: list[Path],
    output: Path | None,
    model: StyleModel,
    opts: StyleOptions,
    runtime: Runtime,
    *,
    blend: list[float] | None = None,
    seed: int = 0,
    logger: Logger,
) -> dict[str, Any]:
    """`dl stylize`: read the images, stylize, write OUTPUT; returns the command's JSON answer."""
    if not styles:
        raise DlError("Give at least one style image after the content image: dl stylize CONTENT STYLE [STYLE ...]")
    output = Path(output) if output is not None else Path(f"{Path(content).stem}-{Path(styles[0]).stem}.png")
    image_format(output)  # an unwritable extension fails now, not after the optimisation
    content_image = read_image(content)
    style_images = [read_image(p) for p in styles]
    normalised_blend(blend, len(styles))  # and so does a bad --style-blend
    runtime = _style_runtime(runtime, logger, opts.optimizer)
    features = place(load_features(model, logger), runtime)

    def on_save(evals: int, image: Any) -> None:
        path = output.with_name(f"{output.stem}_{evals:06d}{output.suffix}")
        save_image(image, path)
        logger.info(f"{evals} evaluations -> {path}", markup=False)

    logger.info(
        f"stylize {content} with {', '.join(map(str, styles))}: {opts.optimizer}, {opts.steps} evaluations at "
        f"{'/'.join(map(str, opts.sizes()))} px on {runtime.device} ({runtime.precision})",
        markup=False,
    )
    result = stylize(
        content_image,
        style_images,
        features,
        model,
        opts,
        runtime,
        blend=blend,
        seed=seed,
        logger=logger,
        on_save=on_save,
    )
    save_image(result.image, output)
    return {"output": str(output), "steps": result.steps, "seconds": round(result.seconds, 3), "losses": result.losses}


def _style_runtime(runtime: Runtime, logger: Logger, optimizer: str) -> Runtime:
    """L-BFGS runs in fp32. fp16 autocast would need loss scaling, which L-BFGS's closure has no
    place for; and under bf16 autocast (what `auto` picks on recent GPUs) its curvature estimates
    from low-precision gradients stopped the line search after 7 of 300 evaluations (H100,
    512 px), while fp32 took 12.7 s for all 300. Adam keeps the runtime's bf16."""
    if runtime.precision == "fp32" or (optimizer == "adam" and runtime.precision == "bf16"):
        return runtime
    logger.warn(f"precision {runtime.precision}: {optimizer} style transfer runs in fp32 instead")
    return Runtime(runtime.device, "fp32", runtime.channels_last, runtime.rank, runtime.local_rank, runtime.world_size)


def place(features: VGGFeatures, runtime: Runtime) -> VGGFeatures:
    """On the runtime's device; NHWC when the runtime says so (CUDA) and always on the CPU, where
    oneDNN's NHWC convolutions made a VGG19 evaluation 15% faster at 512 px (bench_style.py)."""
    features = features.to(runtime.device)
    return features.to_channels_last() if runtime.channels_last or runtime.device.type == "cpu" else features


# --------------------------------------------------------------------------- the `style` task (dl train)
#
# `dl train configs/style.yaml` optimises every content x style pair of a grid. It runs through
# the shared runner like any task, because what the runner gives is what a grid wants: the run
# folder (config.yaml, metrics.jsonl, summary.json), a checkpoint after each pair, `--resume` and
# `train.max_steps`. The fit is word2vec's: one "batch" is one pair and `Job.update_step` is that
# pair's whole optimisation (stylize above, L-BFGS or Adam over stylize.steps evaluations). The
# "model" is the grid of output images, held as parameters: so a checkpoint holds the images done
# so far, a resumed run continues with the next pair, and `dl eval` recomputes the losses. The
# runner's own optimizer over them never sees a gradient (the pair's optimisation works on its own
# tensor and copies the result in), so its step is a no-op; `optim` and `schedule` are unused.


def shape_signature(config: dict[str, Any]) -> dict[str, Any]:
    """A resumed grid must keep its pictures and output size (the images in the checkpoint)."""
    data, opts = config["data"], config["stylize"]
    return {
        "data.dataset": data["dataset"],
        "data.contents": data["contents"],
        "data.styles": data["styles"],
        "data.generated": data["generated"],
        "stylize.size": opts["size"],
    }


class StyleGrid(nn.Module):
    """The outputs of a grid, pair k = (content k // n_styles, style k % n_styles), as (3, H, W) parameters."""

    def __init__(self, shapes: list[tuple[int, int]]):
        super().__init__()
        self.images = nn.ParameterList([nn.Parameter(torch.zeros(3, h, w)) for w, h in shapes])


class PairBatches:
    """The runner's loader: batch k is [k], the k-th content x style pair."""

    def __init__(self, n_pairs: int):
        self.n_pairs = n_pairs

    def __len__(self) -> int:
        return self.n_pairs

    def batches(self, epoch: int, start: int = 0):
        for k in range(start, self.n_pairs):
            yield [k]


def build(cfg: Config, runtime: Runtime, load_weights: bool = True) -> Job:
    """The grid as a runner Job. The VGG is loaded even when resuming: it is not in the checkpoint."""
    if runtime.distributed:
        raise DlError("The style task runs in one process: run it without torchrun/--nproc.")
    if cfg.train.grad_accum != 1:
        raise DlError("The style task optimises each image itself: train.grad_accum must be 1.")
    if cfg.stylize.save_every is not None:
        raise DlError("stylize.save_every is for dl stylize; a grid writes each finished image into the run folder.")
    contents, styles = grid_pictures(cfg.data, cfg.seed)
    logger = Logger(enabled=runtime.is_main)
    runtime = _style_runtime(runtime, logger, cfg.stylize.optimizer)
    features = place(load_features(cfg.model, logger), runtime)
    pairs = [(c, s) for c in range(len(contents)) for s in range(len(styles))]
    grid = StyleGrid([image_size_for(contents[c][1], cfg.stylize.size) for c, _ in pairs])

    def update_step(net: StyleGrid, batch: list[int], lr: float) -> dict[str, torch.Tensor]:
        (k,) = batch
        c, s = pairs[k]
        result = stylize(
            contents[c][1], [styles[s][1]], features, cfg.model, cfg.stylize, runtime, seed=cfg.seed + k, logger=logger
        )
        with torch.no_grad():
            net.images[k].copy_(to_tensor(result.image, result.image.size)[0])
        return {"loss": torch.tensor(result.losses["total"], device=runtime.device)}

    def eval_step(net: StyleGrid, batch: list[int]) -> dict[str, torch.Tensor]:
        (k,) = batch
        c, s = pairs[k]
        problem = _Problem.at(
            cfg.stylize.size, contents[c][1], [styles[s][1]], [1.0], features, cfg.model, cfg.stylize, runtime
        )
        image = net.images[k].unsqueeze(0).float()
        if cfg.stylize.preserve_color:
            image = rgb_to_yiq(image)[:, :1]
        values = losses(features, image, problem.targets, cfg.model, cfg.stylize, runtime)
        return {**{name: v.detach() for name, v in values.items()}, "count": torch.tensor(1.0)}

    def export(net: StyleGrid, run_dir: Path) -> None:
        outputs = []
        for k, (c, s) in enumerate(pairs):
            image = to_pil(net.images[k].unsqueeze(0))
            save_image(image, run_dir / "images" / f"{contents[c][0]}__{styles[s][0]}.png")
            outputs.append(image)
        save_image(make_grid([p for _, p in contents], [p for _, p in styles], outputs), run_dir / "grid.png")

    return Job(
        model=grid,
        train_data=PairBatches(len(pairs)),
        eval_data={"val": PairBatches(len(pairs))},
        eval_step=eval_step,
        best_metric="total",
        best_mode="min",
        items_per_batch=len,
        update_step=update_step,
        export=export,
        extra={"contents": [n for n, _ in contents], "styles": [n for n, _ in styles]},
    )


def restore_model(cfg: Config, extra: dict[str, Any]) -> tuple[None, dict[str, Any]]:
    """No model to use: a grid's outputs are the run's images/ (its checkpoint holds them only to resume)."""
    return None, {}


def eval_notes(cfg: Config) -> dict[str, str]:
    """Nothing to print beside the metrics."""
    return {}


def grid_pictures(data: StyleData, seed: int) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """(name, PIL image) lists of the contents and the styles."""
    if data.dataset == "generated":
        return generated_pictures(seed, data.generated)
    return _files(data.contents, "data.contents"), _files(data.styles, "data.styles")


def _files(patterns: list[str], key: str) -> list[tuple[str, Any]]:
    paths: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            paths.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
            if not matches:
                raise DlError(f"{key}: '{pattern}' is no image file, folder or glob pattern that matches a file.")
            paths += matches
    if not paths:
        raise DlError(f"{key} names no images: give files, folders or glob patterns (e.g. {key}: [photos/]).")
    return [(p.stem, read_image(p)) for p in paths]


def generated_pictures(seed: int, count: int, size: int = 256) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Pictures drawn from the seed: contents are landscapes (sky, sun, hills, a house), styles
    are colourful textures (stripes, swirls, blobs, checks), so a grid runs without any files."""
    rng = np.random.default_rng(seed)
    h, w = (size * 3) // 4, size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    contents = []
    for i in range(count):
        image = np.stack([0.3 + 0.4 * y / h, 0.5 + 0.3 * y / h, np.full_like(y, 0.9)], -1)  # sky
        cx, cy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.3) * h, rng.uniform(0.06, 0.12) * w
        image[(x - cx) ** 2 + (y - cy) ** 2 < r**2] = (1.0, 0.85, 0.2)  # sun
        hill = h * (0.6 + 0.08 * np.sin(x / w * rng.uniform(4, 9) + rng.uniform(0, 6)))
        image[y > hill] = (0.2, 0.55 + 0.1 * i / max(1, count - 1), 0.2)
        x0, y0 = int(rng.uniform(0.15, 0.6) * w), int(0.45 * h)
        image[y0 : y0 + h // 4, x0 : x0 + w // 5] = (0.75, 0.3, 0.25)  # house
        contents.append((f"scene{i + 1}", _to_pil(image)))
    styles = []
    for i in range(count):
        colours = rng.uniform(0, 1, (3, 3)).astype(np.float32)
        kind = i % 4
        if kind == 0:  # diagonal stripes
            t = 0.5 + 0.5 * np.sin((x + y) / rng.uniform(4, 9))
        elif kind == 1:  # swirls
            r = np.hypot(x - w / 2, y - h / 2)
            t = 0.5 + 0.5 * np.sin(r / 5 + 3 * np.arctan2(y - h / 2, x - w / 2))
        elif kind == 2:  # blobs
            t = 0.5 + 0.25 * (np.sin(x / 11 + rng.uniform(0, 6)) + np.sin(y / 7 + x / 13))
        else:  # checks
            t = ((x // 16 + y // 16) % 2).astype(np.float32)
        t = np.clip(t + rng.normal(0, 0.05, t.shape).astype(np.float32), 0, 1)[..., None]
        image = colours[0] * t + colours[1] * (1 - t) + 0.2 * colours[2] * t * (1 - t)
        styles.append((f"texture{i + 1}", _to_pil(image)))
    return contents, styles


def _to_pil(array: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8), "RGB")


def make_grid(contents: list[Any], styles: list[Any], outputs: list[Any], cell: int = 256, gap: int = 4) -> Any:
    """A picture of the grid: the styles along the top, the contents down the left, each output
    where its row and column meet; every image fitted into a square cell (at most `cell` px, no
    larger than the outputs), aspect ratio kept."""
    from PIL import Image

    cell = min(cell, max(max(image.size) for image in outputs))
    rows, cols = len(contents) + 1, len(styles) + 1
    canvas = Image.new("RGB", (cols * cell + (cols + 1) * gap, rows * cell + (rows + 1) * gap), "white")

    def put(image: Any, row: int, col: int) -> None:
        fitted = image.copy()
        fitted.thumbnail((cell, cell), Image.Resampling.LANCZOS)
        left = gap + col * (cell + gap) + (cell - fitted.width) // 2
        top = gap + row * (cell + gap) + (cell - fitted.height) // 2
        canvas.paste(fitted, (left, top))

    for j, style in enumerate(styles):
        put(style, 0, j + 1)
    for i, content in enumerate(contents):
        put(content, i + 1, 0)
        for j in range(len(styles)):
            put(outputs[i * len(styles) + j], i + 1, j + 1)
    return canvas
