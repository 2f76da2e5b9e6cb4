"""`dl stylize`: what the command needs around the Gatys et al. library (dlcli/models/gatys.py):
reading and writing image files, loading the feature network's weights, the flags turned into
settings, and `stylize_files`, which the command calls.

    dl stylize examples/scene.jpg examples/stripes.jpg -o out.jpg          # VGG19 ImageNet features, L-BFGS
    dl stylize examples/scene.jpg examples/stripes.jpg --features random   # offline: a fixed random VGG19
    dl stylize examples/scene.jpg examples/stripes.jpg examples/swirls.jpg --style-blend 0.7,0.3

A module of dlcli/ beside cli.py, as export.py and vectors.py are, not of dlcli/tasks/: `dl stylize`
is a command, not a task (tasks/ holds one module per `dl train` task, listed in TASKS). The grid
task, tasks/style.py, uses its file and feature-network functions too. The settings (pydantic
sections shared by `dl stylize` and the recipe) are in tasks/style_config.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlcli.console import Logger
from dlcli.errors import DlError
from dlcli.models.gatys import normalised_blend, stylize
from dlcli.models.vgg_features import VGGFeatures
from dlcli.runtime import Runtime
from dlcli.tasks.style_config import StyleModel, StyleOptions

# --------------------------------------------------------------------------- image files


def read_image(path: Path) -> Any:
    """An RGB PIL image, turned upright by its EXIF orientation; a DlError for anything else."""
    from dlcli.data import imagecheck

    path = Path(path)
    if not path.is_file():
        raise DlError(f"{path}: no such image file. Give the path of a JPEG/PNG/... image.")
    return imagecheck.read_image(path)


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
    state, record = checkpoint.read_state_dict(path, "features")
    if record is not None:
        arch = (record.config.get("model") or {}).get("arch", "")
        if not str(arch).startswith("vgg"):
            raise DlError(
                f"features: {path} is a checkpoint of a {arch or record.task} run; style transfer needs a VGG."
            )
    return state


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
