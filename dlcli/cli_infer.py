"""The commands that answer with a model: `dl predict` (a classification run, or torchvision's
ImageNet weights), `dl tag`, `dl generate`, `dl translate` (a run of their task), and `dl models`,
the classifiers `dl predict --arch` takes. Each calls its task module's function (classify.predict,
tag.tag, lm.generate, translate.translate), imported in the body: importing this module loads no torch.
Without --run, each answers with the newest finished run of its task under runs/ (cli_common.run_or_newest),
found before torch is loaded.

cli.py registers these functions on the `dl` app.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dlcli.cli_common import DeviceOption, JsonOption, guarded, run_or_newest
from dlcli.console import log, out, print_json
from dlcli.errors import DlError


@guarded
def predict(
    images: Annotated[list[Path], typer.Argument(help="image files")],
    run: Annotated[
        Path | None,
        typer.Option("--run", help="a classification run folder; default: the newest finished one under runs/"),
    ] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="a torchvision classifier (with --weights)")] = None,
    weights: Annotated[str | None, typer.Option("--weights", help="imagenet, or a state_dict file")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="classes to show per image")] = 5,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Top classes for images, from a trained run or torchvision's ImageNet weights."""
    if run is not None and arch is not None:
        raise DlError("Give either --run RUN or --arch ARCH (with --weights imagenet|PATH), not both.")
    if arch is None and run is None and weights is not None:
        raise DlError(f"--weights {weights} goes with --arch ARCH (a torchvision classifier); a run has its own.")
    if arch is None:
        run = run_or_newest(run, "classify", "--run RUN or --arch ARCH --weights imagenet")
    from dlcli.runtime import pick_device
    from dlcli.tasks import classify

    results = classify.predict(images, run, arch, weights, top, pick_device(device or "auto"))
    if json_:
        print_json(results)
        return
    for result in results:
        out.print(f"[bold]{escape(result['image'])}[/]")
        for row in result["top"]:
            out.print(f"  {row['prob']:7.2%}  {row['label']}", markup=False)


# The --run of the commands that answer with a run of one task: its help. Without it they take the newest
# finished run of that task (run_or_newest, first thing: before the command's imports load torch).
RUN_HELP = {
    "tag": "a tagger's run folder (task: tag); default: the newest finished one under runs/",
    "generate": "a language-model run folder (task: lm); default: the newest finished one under runs/",
    "translate": "a translation run folder (task: translate); default: the newest finished one under runs/",
}


@guarded
def tag_cmd(
    sentence: Annotated[str, typer.Argument(help="a sentence; words and punctuation are split apart")],
    run: Annotated[Path | None, typer.Option("--run", help=RUN_HELP["tag"])] = None,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Part-of-speech tags for a sentence, from a trained tagger."""
    run = run_or_newest(run, "tag")
    from dlcli.tasks import tag

    tagged = tag.tag(run, sentence, device or "cpu")  # dl tag runs on the CPU unless --device says otherwise
    if json_:
        print_json(tagged)
        return
    out.print(" ".join(f"{t['token']}/{t['tag']}" for t in tagged), markup=False, highlight=False)


@guarded
def generate(
    run: Annotated[Path | None, typer.Option("--run", help=RUN_HELP["generate"])] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="text to continue")] = "",
    length: Annotated[
        int, typer.Option("--length", min=1, help="tokens to sample: characters, or words for a word-level run")
    ] = 200,
    temperature: Annotated[
        float, typer.Option("--temperature", help="> 0: below 1 sharper, above 1 more random")
    ] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="sample among the k most likely tokens (0: all)")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="sampling seed")] = 0,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Sample text from a language model; the text starts with the prompt."""
    run = run_or_newest(run, "lm")
    from dlcli.tasks import lm

    text = lm.generate(run, prompt, length, temperature, top_k, seed, device)
    if json_:
        print_json({"prompt": prompt, "text": text})
        return
    out.print(text, markup=False, highlight=False)


@guarded
def translate_cmd(
    sentence: Annotated[str, typer.Argument(help="the source sentence, or - to translate each line of stdin")],
    run: Annotated[Path | None, typer.Option("--run", help=RUN_HELP["translate"])] = None,
    beam: Annotated[
        int | None, typer.Option("--beam", min=1, help="beam width (1: greedy; default: the recipe's decode.beam)")
    ] = None,
    attention: Annotated[
        Path | None,
        typer.Option("--attention", help="draw the cross-attention of the (first) sentence into this image"),
    ] = None,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Translate a sentence (or stdin's lines) with a trained encoder-decoder transformer."""
    run = run_or_newest(run, "translate")
    from dlcli.tasks import translate

    sentences = [line.rstrip("\r\n") for line in sys.stdin] if sentence == "-" else [sentence]
    results = translate.translate(run, sentences, beam, device)
    if attention is not None and results:
        first = results[0]
        src_tokens, tgt_tokens, weights = translate.cross_attention(run, first["source"], first["translation"], device)
        translate.plot_attention(src_tokens, tgt_tokens, weights, attention)
    if json_:
        print_json(results if sentence == "-" else results[0])
    else:
        for result in results:
            out.print(result["translation"], markup=False, highlight=False)
    if attention is not None and results:
        log.print(f"attention map: {attention}", markup=False, highlight=False)


@guarded
def models(json_: JsonOption = False) -> None:
    """The image classifiers with torchvision's metadata (ImageNet weights)."""
    from dlcli.tasks import classify

    rows = classify.model_table()
    if json_:
        print_json(rows)
        return
    table = Table("arch", "params (M)", "GFLOPs", "ImageNet acc@1", "min size", "aux heads")
    for r in rows:
        table.add_row(
            r["arch"],
            f"{r['params'] / 1e6:.1f}",
            f"{r['gflops']:.2f}",
            f"{r['imagenet_top1']:.3f}",
            str(r["min_size"]),
            "yes" if r["aux_logits"] else "",
        )
    out.print(table)
