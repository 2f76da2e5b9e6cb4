"""What dlcli/models/window_conv.py saves: training steps of torchvision classifiers at small inputs, with the
one-pixel-output convolutions as torch runs them and as the product they are, side by side in one process.

    .venv/bin/python scripts/bench_window_conv.py                  # resnet18 at 32 px, batch 32 (make demo)
    .venv/bin/python scripts/bench_window_conv.py --archs resnet18,mobilenet_v2,vgg16 --no-append

Each arch is timed both ways, alternating, over the same random batch (fp32, AdamW as the demo trains),
after warm-up steps; the layer row times one 3x3 512->512 convolution on a 1x1 map, forward and backward.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch
import torch.nn.functional as F
import torchvision

from dlcli.models.window_conv import use_window_convs

from benchlib import append_section, load_note


def step_ms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1000


def layer_ms(windowed: bool, batch: int, steps: int) -> float:
    conv = torch.nn.Conv2d(512, 512, 3, padding=1, bias=False)
    if windowed:
        use_window_convs(conv)
    x = torch.randn(batch, 512, 1, 1, requires_grad=True)
    for _ in range(3):
        conv(x).sum().backward()
    start = time.perf_counter()
    for _ in range(steps):
        conv(x).sum().backward()
    return (time.perf_counter() - start) / steps * 1000


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    load = load_note()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 4, (args.batch,))
    rows = []
    for arch in args.archs.split(","):
        plain = torchvision.models.get_model(arch, num_classes=4)
        windowed = copy.deepcopy(plain)
        count = use_window_convs(windowed)
        # alternate, twice each, and keep each side's best: the machine's drift hits both alike
        times = {"plain": [], "window": []}
        for _ in range(2):
            times["plain"].append(step_ms(plain, x, y, args.steps))
            times["window"].append(step_ms(windowed, x, y, args.steps))
        a, b = min(times["plain"]), min(times["window"])
        rows.append(
            f"| {arch} step, {args.size} px, batch {args.batch} ({count} convs eligible) | {a:.0f} | {b:.0f} | {a / b:.2f}x |"
        )
    a, b = layer_ms(False, args.batch, args.steps), layer_ms(True, args.batch, args.steps)
    rows.append(
        f"| one 3x3 512->512 conv on a 1x1 map, batch {args.batch}, fwd+bwd | {a:.1f} | {b:.1f} | {a / b:.1f}x |"
    )
    body = "\n".join(
        [
            f"CPU: {cpu_name()}, {torch.get_num_threads()} threads. Load: {load} at start, {load_note()} at the end.",
            "",
            "| what | torch's convolution, ms | window_conv, ms | speed-up |",
            "|---|---:|---:|---:|",
            *rows,
        ]
    )
    print(body)
    if not args.no_append:
        command = f"python scripts/bench_window_conv.py --archs {args.archs} --size {args.size} --batch {args.batch}"
        append_section("bench_window_conv", command, body)


if __name__ == "__main__":
    main()
