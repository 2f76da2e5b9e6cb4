"""Image classification with torchvision's classifiers: train, evaluate, predict.

    dl train configs/resnet.yaml
    dl eval runs/resnet18-shapes --json
    dl predict examples/circle.png --run runs/resnet18-shapes --top 3
    dl predict examples/circle.png --arch resnet18 --weights imagenet

Any torchvision classification builder works by name (`model.arch: resnet18`); the
classification head is sized for the data's classes. GoogLeNet and Inception v3 also train
their auxiliary heads, weighted 0.4 as in Szegedy et al. (2015, 2016).
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlcli import checkpoint, loading
from dlcli.data.download import load_torchvision_state_dict, torchvision_weights
from dlcli.data.images import eval_transform, load_dataset, make_loader, read_image
from dlcli.data.loaders import normalize
from dlcli.errors import DlError
from dlcli.models.window_conv import use_window_convs
from dlcli.runner import Job
from dlcli.runtime import Runtime

# The recipe schema is in a torch-free module, for `dl config show`; the task's surface re-exports it.
from dlcli.tasks.classify_config import ClassifyModel, ClassifyTrain, Config, ImageDataConfig  # noqa: F401

NAME = "classify"
RUN_KIND = "an image classifier"  # in the error for a run of another task

# Inception v3's auxiliary head pools a 17x17 map with a 5x5/3 window, then a 5x5 conv:
# below 299 px the map is too small (the paper's input size is exactly the minimum).
INCEPTION_AUX_MIN_SIZE = 299
AUX_ARCHS = ("googlenet", "inception_v3")
AUX_HEADS = ("aux1", "aux2", "AuxLogits")  # GoogLeNet's two auxiliary heads, Inception v3's one
CIFAR_STEM_ARCHS = ("resnet", "resnext", "wide_resnet")  # torchvision.models.ResNet: conv1 + maxpool stems


# --------------------------------------------------------------------------- models


def known_archs() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_arch(arch: str) -> None:
    archs = known_archs()
    if arch not in archs:
        close = difflib.get_close_matches(arch, archs, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DlError(
            f"Unknown model.arch '{arch}'.{hint} `dl models` lists the classifiers; any of: {', '.join(archs)}."
        )


def min_input_size(arch: str) -> int:
    """torchvision's published minimum input side for an architecture."""
    weights = torchvision_weights(arch)
    return int(max(weights.meta.get("min_size", (1, 1))))


def size_step(arch: str) -> int:
    """What data.image_size must be a multiple of: ViT's patch side (vit_b_16: 16); MaxViT's 224,
    so that its 7 x 7 attention partitions tile the feature map at every stride up to 32."""
    if arch.startswith("vit_"):
        return int(arch.rsplit("_", 1)[1])
    if arch.startswith("maxvit"):
        return 224
    return 1


def size_kwargs(arch: str, image_size: int) -> dict[str, Any]:
    """ViT and MaxViT are built for one input size (224 unless told): tell them data.image_size."""
    if arch.startswith("vit_"):
        return {"image_size": image_size}
    if arch.startswith("maxvit"):
        return {"input_size": (image_size, image_size)}
    return {}


def uses_aux(model_cfg: ClassifyModel, image_size: int) -> bool:
    if model_cfg.arch not in AUX_ARCHS:
        return False
    fits = model_cfg.arch != "inception_v3" or image_size >= INCEPTION_AUX_MIN_SIZE
    if model_cfg.aux_logits == "auto":
        return fits
    if model_cfg.aux_logits and not fits:
        raise DlError(
            f"Inception v3's auxiliary head needs images of at least {INCEPTION_AUX_MIN_SIZE} px "
            f"(data.image_size is {image_size}). Set model.aux_logits=false or data.image_size>={INCEPTION_AUX_MIN_SIZE}."
        )
    return bool(model_cfg.aux_logits)


def check_model(model_cfg: ClassifyModel, image_size: int) -> None:
    """Refuse an unknown arch or a too-small input before any data is made or read."""
    check_arch(model_cfg.arch)
    minimum = min_input_size(model_cfg.arch)
    if image_size < minimum:
        raise DlError(
            f"{model_cfg.arch} needs images of at least {minimum} px, but data.image_size is {image_size}. "
            f"Set data.image_size to {minimum} or more."
        )
    step = size_step(model_cfg.arch)
    if image_size % step:
        why = (
            f"it cuts images into {step} x {step} patches"
            if step < 224
            else "its 7 x 7 attention windows must tile the feature maps"
        )
        raise DlError(
            f"{model_cfg.arch} needs data.image_size to be a multiple of {step} ({why}), but it is {image_size}. "
            f"Set data.image_size to {image_size // step * step or step} or {(image_size // step + 1) * step}."
        )
    if model_cfg.pretrained and model_cfg.arch.startswith("vit_") and image_size != minimum:
        raise DlError(
            f"torchvision's {model_cfg.arch} weights are for {minimum} px images (their position embeddings fix the size), "
            f"but data.image_size is {image_size}. Set data.image_size to {minimum}, or train from scratch (model.pretrained=false)."
        )
    uses_aux(model_cfg, image_size)
    if model_cfg.stem == "cifar" and not model_cfg.arch.startswith(CIFAR_STEM_ARCHS):
        raise DlError(
            f"model.stem=cifar replaces the first convolution and max-pool of the ResNet family "
            f"({', '.join(a + '*' for a in CIFAR_STEM_ARCHS)}); {model_cfg.arch} has no such stem. "
            "Remove model.stem from the recipe."
        )


def use_cifar_stem(model: nn.Module) -> None:
    """The ResNet stem for small images (He et al. 2016, section 4.2; torchvision's CIFAR recipes): a
    3x3 stride-1 first convolution and no max-pool, so a 32 px image reaches the last stage at 4x4
    rather than 1x1. The new convolution starts fresh (pretrained weights keep the rest)."""
    old = model.conv1
    model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
    model.maxpool = nn.Identity()


def check_batch_norm_batch(model: nn.Module, cfg: Config, train_images: int, runtime: Runtime) -> None:
    """Refuse training where a BatchNorm layer would normalize 2 values or fewer per channel.

    In training BatchNorm normalizes each channel with the batch's own statistics, over the
    batch x H x W values of its input map. One value (a batch of 1 at ResNet's 1x1 last block at
    32 px) stops torch with "Expected more than 1 value per channel". Two fail silently: they
    normalize to -1 and +1 whatever they are, and the gradient through the layer grows as
    1/sqrt(eps) where they are close. DenseNet-161 at 32 px and batch 2 stacks 49 such layers (its
    last dense block is 1x1): its first gradient norm is ~1e11 and the weights are NaN by step 2.
    Gradient norms at initialization (shapes, 32 px): 7e11 at 2 values, 1e3 at 4, 1e2 at 8 (as at
    64 px). The loader drops the last partial batch, so a batch is min(data.batch_size, training
    images per process) images.
    """
    if cfg.train.sync_batchnorm and runtime.world_size > 1:
        return  # statistics over every process's batch
    batch = min(cfg.data.batch_size, train_images // runtime.world_size)
    if batch >= 3:  # a map is at least 1x1, so every layer gets 3 values or more
        return
    smallest = smallest_batch_norm_map(model, cfg.data.image_size)
    if smallest is None:
        return
    layer, shape, layers = smallest
    values = batch * math.prod(shape)
    if values > 2:
        return
    why = (
        f"data.batch_size is {cfg.data.batch_size}"
        if cfg.data.batch_size == batch
        else f"the training split has {train_images} image(s) for {runtime.world_size} process(es)"
    )
    enough = 8  # values per channel where the gradients were tame (see above)
    size_factor = math.ceil(math.sqrt(enough / max(values, 1)))  # 0 values: fewer images than processes
    raise DlError(
        f"{cfg.model.arch} at {cfg.data.image_size} px would train {layers} BatchNorm layer(s) on only {values} value(s) "
        f"per channel ({layer}: {'x'.join(map(str, shape)) or '1'} maps x {batch} image(s) per batch; {why}). BatchNorm "
        "normalizes each channel over the batch: 2 values become -1 and +1 whatever they are and the gradient explodes, "
        f"1 stops torch. Set data.batch_size to {math.ceil(enough / math.prod(shape))} or more, or data.image_size to "
        f"{cfg.data.image_size * size_factor} or more."
    )


def smallest_batch_norm_map(model: nn.Module, image_size: int) -> tuple[str, tuple[int, ...], int] | None:
    """The BatchNorm layer whose input map is smallest in a training forward pass at `image_size`:
    (its name, the map's spatial shape, how many layers share that size), or None without BatchNorm.

    The pass runs on meta tensors (shapes only: no memory, no arithmetic) through a functional
    copy of the weights, so the model itself is untouched. Should an op lack a meta kernel, the
    check is skipped (None): a real batch then meets torch's own error, if any."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:  # returns None: the inputs go on unchanged
            shapes.setdefault(name, tuple(args[0].shape[2:]))  # (N, C, H, W) -> (H, W)

        return hook

    hooks = [
        module.register_forward_pre_hook(record(name))
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    if not hooks:
        return None
    state = {
        name: torch.empty_like(t, device="meta") for name, t in [*model.named_parameters(), *model.named_buffers()]
    }
    images = torch.empty(2, 3, image_size, image_size, device="meta")  # 2: torch's own check needs more than 1 value
    try:
        torch.func.functional_call(model, state, (images,))
    except Exception:  # an op without a meta kernel
        return None
    finally:
        for hook in hooks:
            hook.remove()
    if not shapes:
        return None
    smallest = min(math.prod(shape) for shape in shapes.values())
    at_smallest = [name for name, shape in shapes.items() if math.prod(shape) == smallest]
    return at_smallest[0], shapes[at_smallest[0]], len(at_smallest)


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """model.bn_momentum on every BatchNorm layer. Why it is a knob: torchvision's MNASNet keeps
    TensorFlow's 0.9997 (PyTorch's 0.0003), made for hundreds of epochs; after 1,000 steps its running
    statistics are still 74% their start (mean 0, variance 1), so evaluation, which uses them, scores chance.
    Not in the state_dict: a checkpoint's model is rebuilt from the recipe with it."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise DlError(f"{type(model).__name__} has no BatchNorm layers; remove model.bn_momentum from the recipe.")
    for norm in norms:
        norm.momentum = momentum


def build_model(model_cfg: ClassifyModel, num_classes: int, image_size: int, load_weights: bool = True) -> nn.Module:
    """A torchvision classifier with `num_classes` outputs, optionally from pretrained weights.

    load_weights=False skips the pretrained/`weights` files (a checkpoint will fill the model).
    """
    import torchvision

    arch = model_cfg.arch
    check_model(model_cfg, image_size)
    kwargs: dict[str, Any] = size_kwargs(arch, image_size)
    if arch in AUX_ARCHS:
        kwargs["aux_logits"] = uses_aux(model_cfg, image_size)
        kwargs["init_weights"] = True  # torchvision's current default, stated to silence its warning
    if model_cfg.pretrained and arch in AUX_ARCHS:
        # What torchvision sets for its ImageNet weights. Not in the state_dict, so it must be
        # set again whenever the model is rebuilt from a checkpoint (load_weights=False).
        kwargs["transform_input"] = True
    if model_cfg.dropout is not None:
        kwargs["dropout"] = model_cfg.dropout
    pretrained = model_cfg.pretrained and load_weights
    try:
        model = torchvision.models.get_model(
            arch, weights=None, num_classes=1000 if pretrained else num_classes, **kwargs
        )
    except TypeError as e:
        if "dropout" not in str(e):
            raise
        raise DlError(f"{arch} has no dropout setting; remove model.dropout from the recipe.") from None
    if pretrained:
        state = load_torchvision_state_dict(arch)
        if arch in AUX_ARCHS and not kwargs["aux_logits"]:
            # torchvision's files hold the auxiliary heads too; a model without them skips those.
            state = {k: v for k, v in state.items() if k.split(".")[0] not in AUX_HEADS}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if k.split(".")[0] not in AUX_HEADS]:
            raise DlError(
                f"torchvision's {arch} weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}."
            )
        if num_classes != 1000:
            replace_heads(model, num_classes)
    if model_cfg.stem == "cifar":
        use_cifar_stem(model)
    if model_cfg.bn_momentum is not None:
        set_bn_momentum(model, model_cfg.bn_momentum)
    if model_cfg.weights and load_weights:
        skipped = load_weights_file(model, Path(model_cfg.weights))
        if skipped:
            warnings.warn(
                f"model.weights: kept the fresh initialisation of {', '.join(skipped)} (shapes differ)", stacklevel=2
            )
    use_window_convs(model)  # the same model; its one-pixel-output convolutions 7-20x faster on some CPUs
    if model_cfg.freeze_backbone:
        heads = set(head_names(model))
        for name, param in model.named_parameters():
            param.requires_grad = any(name.startswith(h + ".") for h in heads)
    return model


def head_names(model: nn.Module) -> list[str]:
    """The classification layers: the last Linear (SqueezeNet: its 1x1 conv) and the aux heads' last Linear."""
    import torchvision

    if isinstance(model, torchvision.models.SqueezeNet):
        return ["classifier.1"]
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise DlError(f"{type(model).__name__} has no Linear classification layer to resize.")
    heads = [linears[-1]]
    for aux in AUX_HEADS:
        in_aux = [name for name in linears if name.startswith(aux + ".")]
        if in_aux:
            heads.append(in_aux[-1])
    return heads


def replace_heads(model: nn.Module, num_classes: int) -> None:
    """New, freshly initialised classification layers with `num_classes` outputs."""
    for name in head_names(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        if isinstance(old, nn.Conv2d):  # SqueezeNet's classifier is a 1x1 conv
            new: nn.Module = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
            nn.init.normal_(new.weight, mean=0.0, std=0.01)  # torchvision's init for this layer
            nn.init.zeros_(new.bias)
        else:
            new = nn.Linear(old.in_features, num_classes)
        setattr(parent, child, new)
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes


def load_weights_file(model: nn.Module, path: Path, strict: bool = False) -> list[str]:
    """Load a torchvision state_dict or a dl checkpoint into `model`.

    Tensors whose shape differs (a head for other classes) keep their fresh initialisation
    and are returned by name; with strict=True any such difference is an error.
    """
    if not path.is_file():
        raise DlError(f"model.weights: {path} does not exist. Give a state_dict (.pth) or a dl checkpoint (best.pt).")
    state, _ = checkpoint.read_state_dict(path, "model.weights")
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in own if k not in fitting)
    if not fitting or (strict and skipped):
        raise DlError(
            f"model.weights: {path} does not fit {type(model).__name__} (tensors missing or of another shape: "
            f"{', '.join(skipped[:5])}). Is it for another architecture or number of classes?"
        )
    model.load_state_dict(fitting, strict=False)
    return skipped


# --------------------------------------------------------------------------- the task


def shape_signature(config: dict[str, Any]) -> dict[str, Any]:
    """The recipe values that fix the model's shape (a resumed run must keep them)."""
    model, data = config["model"], config["data"]
    return {
        "model.arch": model["arch"],
        "model.num_classes": model["num_classes"],
        "model.aux_logits": model["aux_logits"],
        "model.stem": model.get("stem", "imagenet"),  # absent from checkpoints before it existed
        "data.dataset": data["dataset"],
    }


def build(cfg: Config, runtime: Runtime, load_weights: bool = True) -> Job:
    from dlcli.data.augment import batch_mix  # torchvision.transforms.v2, loaded when a run is built

    check_model(cfg.model, cfg.data.image_size)
    data = load_dataset(cfg.data, cfg.seed)
    num_classes = cfg.model.num_classes or len(data.classes)
    model = build_model(cfg.model, num_classes, cfg.data.image_size, load_weights)
    check_batch_norm_batch(model, cfg, len(data.splits["train"]), runtime)
    train = cfg.train
    aux_weight, smoothing = train.aux_weight, train.label_smoothing
    mix = batch_mix(train.mixup, train.cutmix, num_classes)

    def train_step(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, labels = batch
        # MixUp/CutMix: targets (B, C), rows summing to 1; cross_entropy takes them as class
        # probabilities (label smoothing included). Anything scored against the truth uses `labels`.
        targets = labels
        if mix is not None:
            images, targets = mix(images, labels)
        out = net(images)
        if isinstance(out, tuple):  # GoogLeNetOutputs / InceptionOutputs: (logits, aux...)
            logits, aux = out[0], [a for a in out[1:] if a is not None]
        else:
            logits, aux = out, []
        loss = F.cross_entropy(logits, targets, label_smoothing=smoothing)
        for aux_logits in aux:
            loss = loss + aux_weight * F.cross_entropy(aux_logits, targets, label_smoothing=smoothing)
        return {"loss": loss}

    eval_flip = cfg.data.eval_flip

    def eval_step(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, labels = batch
        logits = eval_logits(net, images, eval_flip)
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices  # (B, k)
        hits = topk.eq(labels[:, None])
        return {
            "loss": F.cross_entropy(logits, labels, reduction="sum"),
            "top1": hits[:, 0].sum(),
            "top5": hits.any(dim=1).sum(),
            "count": torch.tensor(len(labels), device=labels.device),
        }

    splits = data.splits
    return Job(
        model=model,
        train_data=make_loader(splits["train"], cfg.data, cfg.seed, runtime, train=True),
        eval_data={
            name: make_loader(splits[name], cfg.data, cfg.seed, runtime, train=False)
            for name in ("val", "test")
            if name in splits
        },
        train_step=train_step,
        eval_step=eval_step,
        best_metric="top1",
        best_mode="max",
        extra={"classes": data.classes},
    )


def eval_logits(net: nn.Module, images: torch.Tensor, flip: bool) -> torch.Tensor:
    """The classifier's float logits for a batch in evaluation; with `flip` (data.eval_flip), the mean of the
    logits of the images and of their mirror images (left-right), as airbench's test-time augmentation."""
    logits = net(images).float()
    if flip:
        logits = (logits + net(images.flip(-1)).float()) / 2
    return logits


def restore_model(cfg: Config, extra: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier of a checkpoint (no pretrained files read) and its class names."""
    classes = extra["classes"]
    return build_model(cfg.model, cfg.model.num_classes or len(classes), cfg.data.image_size, load_weights=False), {
        "classes": classes
    }


def eval_notes(cfg: Config) -> dict[str, str]:
    """Nothing to print beside the metrics."""
    return {}


# --------------------------------------------------------------------------- prediction


def predict(
    images: list[Path], run_dir: Path | None, arch: str | None, weights: str | None, top: int, device: torch.device
) -> list[dict[str, Any]]:
    """`dl predict`: top-k classes for each image, from a run folder or torchvision's weights."""
    if run_dir is not None:
        run = loading.load_run(run_dir, device, task=NAME)
        return predict_as_evaluated(run.model, run.assets["classes"], run.config.data, images, top)
    model, classes, transform = _from_weights(arch, weights)
    return predict_images(model.to(device).eval(), classes, transform, images, top)


def predict_as_evaluated(
    model: nn.Module, classes: list[str], data: ImageDataConfig, images: list[Path], top: int
) -> list[dict[str, Any]]:
    """Top-k classes for each image with a trained run's model, seen as its evaluation saw images: the
    run's data.image_size and data.eval_flip (`dl predict --run` and the API's Run.predict)."""
    return predict_images(model, classes, eval_transform(data.image_size), images, top, data.eval_flip)


def predict_images(
    model: nn.Module,
    classes: list[str],
    transform: Callable[[Any], torch.Tensor],
    images: list[Path],
    top: int,
    flip: bool = False,
) -> list[dict[str, Any]]:
    """Top-k classes for each image with a loaded classifier (eval mode), on the model's device.

    Args:
        transform: PIL image -> (3, S, S) in [0, 1], as in evaluation; the ImageNet normalization follows.
        flip: average with the mirror images' logits (the run's data.eval_flip).
    """
    device = next(model.parameters()).device
    pixels = torch.stack([transform(read_image(path)) for path in images]).to(device)  # [0, 1]
    batch = normalize(pixels, torch.contiguous_format)  # the ImageNet mean/std, as in training
    with torch.no_grad():
        probs = eval_logits(model, batch, flip).softmax(dim=1).cpu()
    k = min(top, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    return [
        {
            "image": str(path),
            "top": [{"label": classes[i], "prob": p} for p, i in zip(v.tolist(), idx.tolist(), strict=True)],
        }
        for path, v, idx in zip(images, values, indices, strict=True)
    ]


def _from_weights(arch: str | None, weights: str | None):
    """torchvision's ImageNet model (--weights imagenet) or a state_dict file with ImageNet's 1000 classes."""
    from torchvision import transforms

    if not arch:
        raise DlError("dl predict needs --run RUN, or --arch ARCH with --weights imagenet|PATH.")
    check_arch(arch)
    meta = torchvision_weights(arch)
    imagenet = (weights or "imagenet") == "imagenet"
    model_cfg = ClassifyModel(arch=arch, pretrained=imagenet, aux_logits=False)
    model = build_model(model_cfg, 1000, max(meta.transforms().crop_size))
    if not imagenet:  # a state_dict of this arch with ImageNet's 1000 classes: every tensor must fit
        load_weights_file(model, Path(weights), strict=True)
    # torchvision's own eval preprocessing for these weights (resize, crop), minus the
    # normalization, which predict() applies to every path alike.
    preset = meta.transforms()
    transform = transforms.Compose(
        [
            transforms.Resize(preset.resize_size, antialias=True),
            transforms.CenterCrop(preset.crop_size),
            transforms.ToTensor(),
        ]
    )
    return model, list(meta.meta["categories"]), transform


# --------------------------------------------------------------------------- confusion matrix


@torch.no_grad()
def confusion_matrix(model: nn.Module, loader: Any, runtime: Runtime, flip: bool = False) -> torch.Tensor:
    """Counts over a split, (C, C) int64 on the CPU: row = true class, column = top-1 prediction.

    `loader` is a Job's eval loader (loading.restore_for_eval gives it and the model); `flip` is the run's
    data.eval_flip, so that the counts agree with dl eval's top-1."""
    model.eval()
    counts: torch.Tensor | None = None
    with runtime.autocast():
        for images, labels in loader.batches(0):
            logits = eval_logits(model, images, flip)  # (B, C)
            n = logits.shape[1]
            if counts is None:
                counts = torch.zeros(n * n, dtype=torch.int64, device=labels.device)
            # one bincount over flat (true, predicted) cells instead of a Python loop per image
            counts += torch.bincount(labels * n + logits.argmax(dim=1), minlength=n * n)
    if counts is None:
        raise DlError("The split has no images to count.")
    counts = runtime.sum_across_ranks(counts)  # each process saw its shard of the split
    return counts.view(n, n).cpu()


# --------------------------------------------------------------------------- the model table


def model_table() -> list[dict[str, Any]]:
    """Every torchvision classifier with torchvision's metadata for its DEFAULT weights."""
    rows = []
    for arch in known_archs():
        meta = torchvision_weights(arch).meta
        rows.append(
            {
                "arch": arch,
                "params": meta.get("num_params"),
                "gflops": meta.get("_ops"),
                "imagenet_top1": round(meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100, 5),
                "min_size": int(max(meta.get("min_size", (1, 1)))),
                "aux_logits": arch in AUX_ARCHS,
            }
        )
    return rows
