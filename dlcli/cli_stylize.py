"""`dl stylize`: its flags, turned into the style sections a recipe has (stylize.settings_from_flags),
and the one call to stylize.stylize_files. None means a flag not given: the default its help names
applies (tasks/style_config.py). torch is imported in the body only.

cli.py registers the function on the `dl` app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from dlcli.cli_common import DeviceOption, JsonOption, guarded
from dlcli.console import Logger, out, print_json


@guarded
def stylize(
    content: Annotated[Path, typer.Argument(help="the content image")],
    styles: Annotated[list[Path], typer.Argument(help="one or more style images")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="image to write, format from the extension (default CONTENT-STYLE.png)"),
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="the output's long side in px, aspect ratio kept (default 512)")
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="loss evaluations per scale (L-BFGS makes several per step) (default 500)"),
    ] = None,
    content_weight: Annotated[float | None, typer.Option("--content-weight", help="alpha (default 1)")] = None,
    style_weight: Annotated[float | None, typer.Option("--style-weight", help="beta (default 1e6)")] = None,
    tv_weight: Annotated[float | None, typer.Option("--tv-weight", help="gamma, total variation (default 0.1)")] = None,
    optimizer: Annotated[
        Literal["lbfgs", "adam"] | None, typer.Option("--optimizer", help="lbfgs (the paper's) or adam (default lbfgs)")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="step size (default 1 for lbfgs, 0.02 for adam)")] = None,
    init: Annotated[
        Literal["content", "style", "noise"] | None,
        typer.Option("--init", help="start from the content, the style or white noise (default content)"),
    ] = None,
    preserve_color: Annotated[
        bool, typer.Option("--preserve-color", help="transfer on luminance only, keep the content's colours")
    ] = False,
    style_blend: Annotated[
        str | None, typer.Option("--style-blend", help="weights of the style images, e.g. 0.7,0.3 (default equal)")
    ] = None,
    scales: Annotated[
        str | None, typer.Option("--scales", help="coarse to fine long sides, e.g. 256,512,1024 (the last is --size)")
    ] = None,
    style_scale: Annotated[
        float | None, typer.Option("--style-scale", help="style image long side = size x this (default 1)")
    ] = None,
    save_every: Annotated[
        int | None, typer.Option("--save-every", min=1, help="also write OUT_000050.png ... every N evaluations")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="seeds the noise of --init noise")] = 0,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="imagenet (VGG19, torch hub cache), random (offline, cruder) or a VGG state_dict / dl checkpoint (default imagenet)",
        ),
    ] = None,
    pooling: Annotated[
        Literal["avg", "max"] | None, typer.Option("--pooling", help="avg (the paper's) or max (default avg)")
    ] = None,
    content_layers: Annotated[
        str | None, typer.Option("--content-layers", help="LAYER[:WEIGHT],... (default conv4_2)")
    ] = None,
    style_layers: Annotated[
        str | None,
        typer.Option(
            "--style-layers", help="LAYER[:WEIGHT],... (default conv1_1,conv2_1,conv3_1,conv4_1,conv5_1, w_l = 1/5)"
        ),
    ] = None,
    device: DeviceOption = None,
    precision: Annotated[
        Literal["auto", "fp32", "bf16", "fp16"],
        typer.Option("--precision", help="auto: bf16 autocast on a GPU that has it, fp32 on CPU"),
    ] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or logs")] = False,
    json_: JsonOption = False,
) -> None:
    """Neural style transfer (Gatys et al. 2016): CONTENT redrawn in the style of STYLE (several: blended)."""
    from dlcli.config import TrainConfig
    from dlcli.runtime import create_runtime
    from dlcli.stylize import parse_numbers, settings_from_flags, stylize_files

    model_cfg, opts = settings_from_flags(
        dict(
            features=features,
            pooling=pooling,
            content_layers=content_layers,
            style_layers=style_layers,
            size=size,
            steps=steps,
            content_weight=content_weight,
            style_weight=style_weight,
            tv_weight=tv_weight,
            optimizer=optimizer,
            lr=lr,
            init=init,
            preserve_color=preserve_color or None,
            scales=scales,
            style_scale=style_scale,
            save_every=save_every,
        )
    )
    blend = parse_numbers(style_blend, "--style-blend") if style_blend else None
    runtime = create_runtime(TrainConfig(device=device or "auto", precision=precision))
    result = stylize_files(
        content, styles, output, model_cfg, opts, runtime, blend=blend, seed=seed, logger=Logger(quiet=quiet)
    )
    if json_:
        print_json(result)
        return
    losses = result["losses"]
    out.print(
        f"{result['output']}: {result['steps']} evaluations in {result['seconds']:.1f} s; content {losses['content']:.4g}  "
        f"style {losses['style']:.4g}  tv {losses['tv']:.4g}  total {losses['total']:.4g}",
        markup=False,
    )
