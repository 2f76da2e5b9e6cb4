"""VGG feature maps for style transfer (Gatys, Ecker & Bethge, CVPR 2016).

    features = VGGFeatures.from_state_dict(state, taps=["conv4_2", "conv1_1"], pooling="avg")
    maps = features(image)          # image (1, 3, H, W) in [0, 1] -> {"conv4_2": (1, 512, H/8, W/8), ...}

The layers are torchvision's `vgg*.features` (built by torchvision's own `make_layers`, so a
torchvision state_dict loads key for key), renamed as the paper names them: conv1_1, relu1_1,
conv1_2, ..., pool1, conv2_1, ... Only the layers up to the deepest one asked for are kept
(relu5_1 for the default layers), so conv5_2..conv5_4 and the classifier never run.

Layer names follow the paper. As in the authors' own code (leongatys/PytorchNeuralStyleTransfer
takes r11, r21, ..., r42), the response of "layer conv4_2" is the rectified one: the output of
relu4_2. `relu4_2` is accepted as the same layer.

ImageNet normalization happens inside the module, so callers pass pixels in [0, 1].
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn

# torchvision's VGG configurations (torchvision.models.vgg.cfgs), by number of conv layers.
ARCH_BY_CONVS = {8: ("vgg11", "A"), 10: ("vgg13", "B"), 13: ("vgg16", "D"), 16: ("vgg19", "E")}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0  # --features random: always the same random network, whatever --seed says

_LAYER = re.compile(r"^(conv|relu)(\d)_(\d)$")


def layer_names(cfg: list, batch_norm: bool = False) -> list[str]:
    """The paper's names for the modules torchvision's make_layers(cfg) builds, in order."""
    names, block, index = [], 1, 1
    for v in cfg:
        if v == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += (
                [f"conv{block}_{index}"] + ([f"bn{block}_{index}"] if batch_norm else []) + [f"relu{block}_{index}"]
            )
            index += 1
    return names


def tap_name(name: str) -> str:
    """conv4_2 -> relu4_2: the rectified response, as the paper's authors take it."""
    match = _LAYER.match(name)
    if not match:
        raise ValueError(f"'{name}' is not a VGG layer name like conv4_2 or relu4_2")
    return f"relu{match.group(2)}_{match.group(3)}"


class VGGFeatures(nn.Module):
    """The feature maps of chosen VGG layers for an image in [0, 1].

    Args:
        layers: torchvision's `features` Sequential (any VGG, with or without batch norm).
        names: the paper's name of each of its modules (see `layer_names`).
        taps: layers whose responses `forward` returns (conv4_2 or relu4_2 alike).
        pooling: "max" as trained, or "avg": the paper replaces max pooling by average
            pooling, which "improves the gradient flow" (Gatys et al. 2016, section 2).
    """

    def __init__(self, layers: nn.Sequential, names: list[str], taps: Iterable[str], pooling: str = "max"):
        super().__init__()
        if len(layers) != len(names):
            raise ValueError(f"{len(layers)} layers but {len(names)} names")
        self.taps = {name: tap_name(name) for name in taps}  # as asked -> module name
        unknown = sorted(n for n, t in self.taps.items() if t not in names)
        if unknown:
            valid = [n.replace("relu", "conv") for n in names if n.startswith("relu")]
            raise ValueError(f"no layer {', '.join(unknown)} in this VGG; its layers are {', '.join(valid)}")
        last = max(names.index(t) for t in self.taps.values())
        modules = OrderedDict()
        for name, module in zip(names[: last + 1], list(layers)[: last + 1], strict=True):
            if isinstance(module, nn.MaxPool2d) and pooling == "avg":
                module = nn.AvgPool2d(kernel_size=2, stride=2)
            elif isinstance(module, nn.ReLU):
                module = nn.ReLU(inplace=True)  # the tapped output is the ReLU's, never modified after
            modules[name] = module
        self.layers = nn.Sequential(modules)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.channels_last = False
        self.requires_grad_(False)  # only the image is optimised
        self.eval()

    @classmethod
    def from_state_dict(
        cls, state: dict[str, torch.Tensor] | None, taps: Iterable[str], pooling: str = "max"
    ) -> VGGFeatures:
        """From a torchvision vgg11/13/16/19 (or _bn) state_dict; None: the fixed-seed random VGG19.

        Keys are torchvision's (`features.0.weight`, ...); the classifier's are ignored.
        """
        if state is None:
            layers, names = random_vgg19_layers()
            return cls(layers, names, taps, pooling)
        from torchvision.models.vgg import cfgs

        feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        convs = sum(1 for k, v in feats.items() if k.endswith(".weight") and v.ndim == 4)
        if convs not in ARCH_BY_CONVS:
            raise ValueError(
                f"the state_dict has {convs} conv layers under features.*; a torchvision VGG has 8, 10, 13 or 16 "
                "(vgg11, vgg13, vgg16, vgg19)"
            )
        batch_norm = any(k.endswith("running_mean") for k in feats)
        cfg = cfgs[ARCH_BY_CONVS[convs][1]]
        layers = _empty_layers(cfg, batch_norm)
        layers.load_state_dict(feats)  # strict: every tensor present, every shape right
        return cls(layers, layer_names(cfg, batch_norm), taps, pooling)

    def to_channels_last(self) -> VGGFeatures:
        """NHWC layout for the convs (what cuDNN prefers); the input is converted in forward."""
        self.channels_last = True
        return self.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (1, 3, H, W) in [0, 1] -> {tap as asked: (1, N_l, H_l, W_l)}."""
        x = (image - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, torch.Tensor] = {}
        for name, layer in self.layers.named_children():
            x = layer(x)
            for asked, module in self.taps.items():
                if module == name:
                    out[asked] = x
        return out


def random_vgg19_layers() -> tuple[nn.Sequential, list[str]]:
    """VGG19's feature layers with random weights from a fixed seed (a private generator, so the
    global RNG is untouched): Kaiming normal for ReLU, zero biases, as torchvision initialises VGG,
    but in fan_in mode (He et al. 2015's forward-variance-preserving choice) rather than
    torchvision's fan_out. With fan_out, conv1_1 (3 -> 64 channels) shrinks its responses by
    sqrt(27/576) and each block's first conv by sqrt(1/2): on a photo at 128 px the RMS response is
    0.18 at relu1_1 and 0.07 at relu5_1 (max pooling), so E_l, quartic in them, is 10^3-10^4 times smaller;
    with fan_in it is 0.84 and 0.95, O(1) in every layer.
    """
    from torchvision.models.vgg import cfgs

    cfg = cfgs["E"]
    layers = _empty_layers(cfg)
    generator = torch.Generator().manual_seed(RANDOM_SEED)
    for module in layers:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
            nn.init.zeros_(module.bias)
    return layers, layer_names(cfg)


def _empty_layers(cfg: list, batch_norm: bool = False) -> nn.Sequential:
    """torchvision's make_layers(cfg) with uninitialised tensors: they are loaded or initialised
    next, so skipping PyTorch's default init saves time and leaves the global RNG alone."""
    from torchvision.models.vgg import make_layers

    with torch.device("meta"):
        layers = make_layers(cfg, batch_norm=batch_norm)
    return layers.to_empty(device="cpu")
