"""The `style` task: a grid of contents x styles, each pair stylized as in Gatys, Ecker & Bethge
(CVPR 2016) by the library in dlcli/models/gatys.py.

    dl train configs/style.yaml                                            # a grid of contents x styles

A single picture is `dl stylize` (dlcli/stylize.py), whose image files and feature network this
task uses too. The settings (pydantic sections shared by `dl stylize` and the recipe) are in
style_config.py.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlcli.console import Logger
from dlcli.errors import DlError
from dlcli.models.gatys import _Problem, image_size_for, losses, rgb_to_yiq, stylize, to_pil, to_tensor
from dlcli.runner import Job
from dlcli.runtime import Runtime
from dlcli.stylize import _style_runtime, load_features, place, read_image, save_image

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


# --------------------------------------------------------------------------- the `style` task (dl train)
#
# `dl train configs/style.yaml` optimises every content x style pair of a grid. It runs through
# the shared runner like any task, because what the runner gives is what a grid wants: the run
# folder (config.yaml, metrics.jsonl, summary.json), a checkpoint after each pair, `--resume` and
# `train.max_steps`. The fit is word2vec's: one "batch" is one pair and `Job.update_step` is that
# pair's whole optimisation (gatys.stylize, L-BFGS or Adam over stylize.steps evaluations). The
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
