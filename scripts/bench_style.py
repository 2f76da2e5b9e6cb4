"""Style transfer speed and the offline figure: dl against the PyTorch tutorial's plain loop.

    .venv/bin/python scripts/bench_style.py                        # both parts, appended to BENCHMARKS.md
    .venv/bin/python scripts/bench_style.py --size 256 --evals 5 --rounds 1 --skip-offline --no-append   # a quick look

1. Speed: seconds per L-BFGS loss evaluation at `--size` px (the long side) for `dl`'s stylize and
   for a plain loop written as the PyTorch tutorial "Neural Transfer Using PyTorch" writes it:
   loss modules inserted into an nn.Sequential after the chosen layers (non-inplace ReLUs), the
   Gram matrix by torch.mm divided by its element count, mse_loss, torch.optim.LBFGS with its
   defaults, the image clamped in the closure and evaluations counted there. Both get the same
   layers (content relu4_2, style relu1_1..relu5_1), the same max pooling and the same fixed
   random VGG19 weights (no download), the same content and style pixels (the style resized to the
   content's shape, which the tutorial's loop requires) and threads. Each side's
   time covers its targets and all its evaluations; the two alternate for `--rounds` rounds and
   the median per-evaluation time of each is compared. (The losses differ in normalisation, the
   tutorial's vs the paper's; the work per evaluation does not.)
2. Offline: `dl stylize --features random` at 128 px, run as a command (wall clock of the
   process): the style loss at the start (the content image, one evaluation) and at the end.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from dlcli import stylize as stylize_command
from dlcli.models import gatys
from dlcli.models.vgg_features import VGGFeatures, random_vgg19_layers
from dlcli.runtime import Runtime
from dlcli.tasks.style_config import StyleModel, StyleOptions

from benchlib import REPO, append_section, load_note, machine, sync

SHARED = REPO.parent / "shared" / "datasets" / "style"
console = Console(highlight=False)
# The same layers in the tutorial's names (conv_i / relu_i count the convs: conv4_2 is the 10th).
TUTORIAL_CONTENT = ["relu_10"]
TUTORIAL_STYLE = ["relu_1", "relu_3", "relu_5", "relu_9", "relu_13"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--content", type=Path, default=SHARED / "content" / "tubingen.jpg")
    p.add_argument("--style", type=Path, default=SHARED / "style" / "starry_night.jpg")
    p.add_argument("--size", type=int, default=512, help="long side for the speed comparison")
    p.add_argument(
        "--evals",
        type=int,
        default=21,
        help="loss evaluations per timed run (21: one LBFGS step() call of the tutorial)",
    )
    p.add_argument("--rounds", type=int, default=2, help="alternating dl / plain rounds")
    p.add_argument("--offline-steps", type=int, default=300, help="evaluations of the 128 px offline run")
    p.add_argument("--skip-offline", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-append", action="store_true", help="do not append the results to BENCHMARKS.md")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- the tutorial's loop


class ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target = target.detach()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.loss = F.mse_loss(input, self.target)
        return input


def gram_matrix(input: torch.Tensor) -> torch.Tensor:
    a, b, c, d = input.size()
    features = input.view(a * b, c * d)
    G = torch.mm(features, features.t())
    return G.div(a * b * c * d)


class StyleLoss(nn.Module):
    def __init__(self, target_feature: torch.Tensor):
        super().__init__()
        self.target = gram_matrix(target_feature).detach()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        G = gram_matrix(input)
        self.loss = F.mse_loss(G, self.target)
        return input


class Normalization(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.mean = mean.clone().detach().view(-1, 1, 1)
        self.std = std.clone().detach().view(-1, 1, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self.mean) / self.std


def get_style_model_and_losses(cnn, mean, std, style_img, content_img):
    normalization = Normalization(mean, std)
    content_losses, style_losses = [], []
    model = nn.Sequential(normalization)
    i = 0
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            i += 1
            name = f"conv_{i}"
        elif isinstance(layer, nn.ReLU):
            name = f"relu_{i}"
            layer = nn.ReLU(inplace=False)
        elif isinstance(layer, nn.MaxPool2d):
            name = f"pool_{i}"
        else:
            raise RuntimeError(f"Unrecognized layer: {layer.__class__.__name__}")
        model.add_module(name, layer)
        if name in TUTORIAL_CONTENT:
            target = model(content_img).detach()
            content_loss = ContentLoss(target)
            model.add_module(f"content_loss_{i}", content_loss)
            content_losses.append(content_loss)
        if name in TUTORIAL_STYLE:
            target_feature = model(style_img).detach()
            style_loss = StyleLoss(target_feature)
            model.add_module(f"style_loss_{i}", style_loss)
            style_losses.append(style_loss)
    for i in range(len(model) - 1, -1, -1):
        if isinstance(model[i], (ContentLoss, StyleLoss)):
            break
    return model[: (i + 1)], style_losses, content_losses


def run_style_transfer(
    cnn, mean, std, content_img, style_img, input_img, num_steps, style_weight=1e6, content_weight=1
):
    model, style_losses, content_losses = get_style_model_and_losses(cnn, mean, std, style_img, content_img)
    input_img.requires_grad_(True)
    model.eval()
    model.requires_grad_(False)
    optimizer = torch.optim.LBFGS([input_img])
    run = [0]
    while run[0] < num_steps:  # the tutorial writes <=, which overshoots; evaluations are what is counted

        def closure():
            with torch.no_grad():
                input_img.clamp_(0, 1)
            optimizer.zero_grad()
            model(input_img)
            style_score = sum(sl.loss for sl in style_losses)
            content_score = sum(cl.loss for cl in content_losses)
            style_score *= style_weight
            content_score *= content_weight
            loss = style_score + content_score
            loss.backward()
            run[0] += 1
            return style_score + content_score

        optimizer.step(closure)
    with torch.no_grad():
        input_img.clamp_(0, 1)
    return input_img, run[0]


# --------------------------------------------------------------------------- timing


def time_plain(content: torch.Tensor, style_img: torch.Tensor, evals: int, device: torch.device) -> tuple[float, int]:
    layers, _ = random_vgg19_layers()
    cnn = layers.to(device).eval()
    mean = torch.tensor([0.485, 0.456, 0.406], device=device)
    std = torch.tensor([0.229, 0.224, 0.225], device=device)
    sync(device)
    started = time.perf_counter()
    # LBFGS's defaults: one step() call makes up to 21 evaluations (1 + max_iter=20), so other
    # values of `evals` overshoot; the time is per evaluation either way.
    _, done = run_style_transfer(cnn, mean, std, content, style_img, content.clone(), evals)
    sync(device)
    return (time.perf_counter() - started) / done, done


def time_dl(content_pil, style_pil, size: int, evals: int, runtime: Runtime) -> tuple[float, int]:
    model = StyleModel(features="random", pooling="max")
    features = stylize_command.place(
        VGGFeatures.from_state_dict(None, [*model.content_layers, *model.style_layers], "max"), runtime
    )
    opts = StyleOptions(size=size, steps=evals)
    sync(runtime.device)
    result = gatys.stylize(content_pil, [style_pil], features, model, opts, runtime)
    sync(runtime.device)
    return result.seconds / result.steps, result.steps


def speed(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    runtime = Runtime(device, "fp32", False)
    content_pil, style_pil = stylize_command.read_image(args.content), stylize_command.read_image(args.style)
    shape = gatys.image_size_for(content_pil, args.size)
    # The tutorial's loop needs the style image at the content's shape (the style passes through its
    # content-loss module); dl gets the very same pixels.
    content_pil, style_pil = content_pil.resize(shape), style_pil.resize(shape)  # resizing is not timed
    content = gatys.to_tensor(content_pil, shape).to(device)
    style_t = gatys.to_tensor(style_pil, shape).to(device)
    dl_times, plain_times, plain_evals = [], [], 0
    for r in range(args.rounds):
        t, _ = time_dl(content_pil, style_pil, args.size, args.evals, runtime)
        dl_times.append(t)
        t, plain_evals = time_plain(content, style_t, args.evals, device)
        plain_times.append(t)
        console.print(f"round {r + 1}: dl {dl_times[-1]:.3f} s/eval, plain {plain_times[-1]:.3f} s/eval")
    dl_s, plain_s = statistics.median(dl_times), statistics.median(plain_times)
    return {
        "shape": tuple(content.shape[2:]),
        "style_shape": tuple(style_t.shape[2:]),
        "evals": args.evals,
        "plain_evals": plain_evals,
        "dl_s": dl_s,
        "plain_s": plain_s,
        "dl_all": dl_times,
        "plain_all": plain_times,
        "speedup": plain_s / dl_s,
    }


def offline(args: argparse.Namespace, folder: Path) -> dict:
    """`dl stylize --features random` at 128 px as a command; start and end style losses."""
    base = [
        sys.executable,
        "-m",
        "dlcli",
        "stylize",
        str(args.content),
        str(args.style),
        "--features",
        "random",
        "--size",
        "128",
        "--json",
        "-q",
    ]
    env_note = "DL_OFFLINE=1"
    env = {**__import__("os").environ, "DL_OFFLINE": "1"}
    start = json.loads(
        subprocess.run(
            base + ["--steps", "1", "-o", str(folder / "start.png")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    command = base + ["--steps", str(args.offline_steps), "-o", str(folder / "offline128.png")]
    started = time.perf_counter()
    end = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
    wall = time.perf_counter() - started
    return {
        "command": f"{env_note} dl stylize {args.content.name} {args.style.name} --features random --size 128 "
        f"--steps {args.offline_steps}",
        "start_style": start["losses"]["style"],
        "end": end,
        "wall_s": wall,
        "ratio": start["losses"]["style"] / end["losses"]["style"],
        "written": Path(end["output"]).is_file(),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load_start = load_note()
    console.print(f"{machine()}; {load_start}")
    sp = speed(args)
    console.print(
        f"{args.size} px ({sp['shape'][1]}x{sp['shape'][0]}): dl {sp['dl_s']:.3f} s/eval, plain loop {sp['plain_s']:.3f} "
        f"s/eval: dl {sp['speedup']:.2f}x"
    )
    off = None
    if not args.skip_offline:
        with tempfile.TemporaryDirectory() as tmp:
            off = offline(args, Path(tmp))
        console.print(
            f"offline 128 px: style {off['start_style']:.4g} -> {off['end']['losses']['style']:.4g} "
            f"({off['ratio']:.0f}x lower) in {off['wall_s']:.1f} s (process wall clock), image written: {off['written']}"
        )
    load_end = load_note()
    if args.no_append:
        return
    command = "python scripts/bench_style.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    h, w = sp["shape"]
    sh, sw = sp["style_shape"]
    body = (
        f"Speed: L-BFGS at {args.size} px on {args.device} ({args.content.name} {w}x{h}, {args.style.name} {sw}x{sh}), "
        f"fixed random VGG19 to relu5_1, max pooling, content relu4_2, style relu1_1..relu5_1, fp32, "
        f"{torch.get_num_threads()} threads; dl {args.evals} evaluations, the plain loop {sp['plain_evals']} "
        f"(LBFGS's max_iter=20 per step() call); {args.rounds} alternating rounds, medians.\n\n"
        "| implementation | s per evaluation (median) | rounds | vs plain |\n|---|---:|---|---:|\n"
        f"| dl stylize | {sp['dl_s']:.3f} | {', '.join(f'{t:.3f}' for t in sp['dl_all'])} | {sp['speedup']:.2f}x |\n"
        f"| plain loop (PyTorch tutorial) | {sp['plain_s']:.3f} | {', '.join(f'{t:.3f}' for t in sp['plain_all'])} | 1.00x |\n"
    )
    if off is not None:
        e = off["end"]
        body += (
            f"\nOffline, `{off['command']}` (init content, L-BFGS, defaults): style loss "
            f"{off['start_style']:.4g} at the start -> {e['losses']['style']:.4g} after {e['steps']} evaluations, "
            f"**{off['ratio']:.0f}x lower, in {off['wall_s']:.1f} s** (wall clock of the whole command; the optimisation "
            f"itself {e['seconds']:.1f} s), image written: {'yes' if off['written'] else 'NO'}. Final losses: content "
            f"{e['losses']['content']:.4g}, style {e['losses']['style']:.4g}, tv {e['losses']['tv']:.4g}, total "
            f"{e['losses']['total']:.4g}.\n"
        )
    body += f"\nLoad: {load_start} at start, {load_end} at the end.\n"
    append_section("bench_style", command, body)


if __name__ == "__main__":
    main()
