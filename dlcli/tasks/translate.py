"""Translation with the encoder-decoder Transformer ("Attention is all you need").

    dl train configs/translation.yaml                     # English number words -> German, offline
    dl translate "three hundred twenty one" --run runs/numbers-en-de
    dl train configs/multi30k.yaml --set data.root=../shared/datasets/multi30k
    dl translate "Ein Mann fährt Fahrrad." --run runs/multi30k --beam 5 --attention attn.png
    dl eval runs/multi30k --split test --json             # sacreBLEU and its signature

Text becomes subwords of one joint BPE vocabulary (HF `tokenizers`), trained on the training
sources and targets together and saved with every checkpoint (and as tokenizer.json in the run
folder), so the encoder, the decoder and the output layer share one embedding matrix. A source is
its subwords + EOS; a target BOS + subwords + EOS, the decoder reading all but the last token and
predicting all but the first. Characters the vocabulary never saw become <unk>.

Batches hold sentence pairs of similar length, as many as fit `data.max_tokens` padded tokens
(the larger of source and target length x sentences); they are formed once and their order is
reshuffled every epoch from (seed, epoch), fairseq's scheme.

Training minimises label-smoothed cross-entropy. Evaluation reports the plain cross-entropy per
target token (`loss`, `ppl`), and decodes every sentence to score sacreBLEU's corpus BLEU and chrF
(with their signatures: `dl eval --json` prints them) and exact match: greedy on the validation
split during training, beam search (`decode.beam`) on the test split and in `dl translate`. The
number task leaves BLEU out: its German targets are one word each, so they have no 4-grams and
BLEU is 0 whatever the model says; best.pt is chosen by exact match there, by BLEU elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dlcli import checkpoint, loading
from dlcli.data import parallel
from dlcli.data.loaders import mix_seed
from dlcli.errors import DlError
from dlcli.files import write_text_atomic
from dlcli.models.decoding import beam_search, max_length
from dlcli.models.transformer import Seq2SeqTransformer
from dlcli.runner import Job
from dlcli.runtime import Runtime

# The recipe schema is in a torch-free module, for `dl config show`; the task's surface re-exports it.
from dlcli.tasks.translate_config import SPECIALS, Config, DecodeConfig, TranslateData, TranslateModel, TranslateTrain  # noqa: F401

NAME = "translate"
RUN_KIND = "a translation run"  # in the error for a run of another task

PAD, BOS, EOS, UNK = 0, 1, 2, 3


# --------------------------------------------------------------------------- data and vocabulary


def load_splits(d: TranslateData, seed: int) -> dict[str, parallel.Pairs]:
    """{"train", "val"[, "test"]}: (sources, targets) of each split."""
    if d.dataset == "numbers":
        return parallel.number_splits(seed, d.numbers_train, d.numbers_val, d.numbers_test)
    if d.dataset == "multi30k":
        return {
            split: parallel.multi30k(Path(d.root), split, d.source_lang, d.target_lang)
            for split in ("train", "val", "test")
        }
    if d.dataset == "folder":
        root = Path(d.root)
        if not root.is_dir():
            raise DlError(
                f"data.root: {root} is not a folder (relative paths start at the current directory, {Path.cwd()})."
            )
        splits = {
            s: parallel.read_folder(root, name, d.source_lang, d.target_lang)
            for s, name in (("train", "train"), ("val", "val"))
        }
        if any(root.glob(f"{d.test_split}.{d.source_lang}*")):
            splits["test"] = parallel.read_folder(root, d.test_split, d.source_lang, d.target_lang)
        return splits
    if not d.path:
        raise DlError("data.dataset is 'tsv' but data.path is not set: give a file of 'source<TAB>target' lines.")
    train = parallel.read_tsv(Path(d.path))
    splits = {"train": train}
    if d.val_path:
        splits["val"] = parallel.read_tsv(Path(d.val_path))
    else:  # every 50th pair, deterministic and spread over the file
        sources, targets = train
        splits["val"] = (sources[::50], targets[::50])
        keep = [i for i in range(len(sources)) if i % 50]
        splits["train"] = ([sources[i] for i in keep], [targets[i] for i in keep]) if keep else train
    if d.test_path:
        splits["test"] = parallel.read_tsv(Path(d.test_path))
    return splits


def train_tokenizer(texts: list[str], vocab_size: int):
    """A joint BPE vocabulary over `texts` (deterministic for the same texts)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()  # words keep their leading space as "▁"
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def tokenizer_from_str(text: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(text)


def encode(tokenizer, sentences: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(sentences)]


def decode_ids(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True)


# --------------------------------------------------------------------------- batches


class Batch(NamedTuple):
    src: torch.Tensor  # (B, S) subwords + EOS, padded
    tgt: torch.Tensor  # (B, T) BOS + subwords + EOS, padded
    index: list[int]  # the pairs' positions in their split (for the reference sentences)
    tokens: int  # non-padding source + target tokens (throughput)
    split: str  # train, val or test
    beam: int  # evaluation: decode with this beam width (0: loss only)


def _pad(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)


class TokenBatches:
    """Pairs grouped by length into batches of at most `max_tokens` padded tokens, made once (on
    the device); training reshuffles their order every epoch. Under DDP rank r reads batches
    r, r + world_size, ... (training: the same number on every rank)."""

    def __init__(
        self,
        sources: list[list[int]],
        targets: list[list[int]],
        max_tokens: int,
        device: torch.device,
        *,
        seed: int,
        split: str,
        beam: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        shuffle = split == "train"
        self.seed, self.shuffle = seed, shuffle
        srcs = [s + [EOS] for s in sources]
        tgts = [[BOS, *t, EOS] for t in targets]
        order = sorted(range(len(srcs)), key=lambda i: (len(srcs[i]), len(tgts[i]), i))
        groups: list[list[int]] = []
        group: list[int] = []
        longest = 0
        for i in order:
            size = max(len(srcs[i]), len(tgts[i]))
            if group and max(longest, size) * (len(group) + 1) > max_tokens:
                groups.append(group)
                group, longest = [], 0
            group.append(i)
            longest = max(longest, size)
        if group:
            groups.append(group)
        if shuffle:  # an equal share per rank: DDP steps in lockstep
            groups = groups[: len(groups) // world_size * world_size]
        if not groups:
            raise DlError(
                f"{len(srcs)} training pairs make fewer batches than the {world_size} processes; use fewer processes "
                "or more data."
            )
        self.batches_ = [
            Batch(
                _pad([srcs[i] for i in g]).to(device),
                _pad([tgts[i] for i in g]).to(device),
                g,
                sum(len(srcs[i]) + len(tgts[i]) for i in g),
                split,
                beam,
            )
            for g in groups[rank::world_size]
        ]

    def __len__(self) -> int:
        return len(self.batches_)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = list(range(len(self.batches_)))
        if self.shuffle:
            order = torch.randperm(
                len(order), generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            ).tolist()
        for i in order[start:]:
            yield self.batches_[i]


# --------------------------------------------------------------------------- the model, BLEU and chrF


def build_model(m: TranslateModel, vocab_size: int) -> Seq2SeqTransformer:
    if m.dim % m.heads:
        raise DlError(
            f"model.dim ({m.dim}) must divide by model.heads ({m.heads}): each head gets dim / heads dimensions."
        )
    return Seq2SeqTransformer(
        vocab_size,
        PAD,
        dim=m.dim,
        heads=m.heads,
        encoder_layers=m.encoder_layers,
        decoder_layers=m.decoder_layers,
        ff_dim=m.ff_dim,
        dropout=m.dropout,
        norm_first=m.norm_first,
        activation=m.activation,
    )


def bleu_scorer():
    """sacreBLEU's corpus BLEU, lowercased, with its default 13a tokenizer and exp smoothing."""
    from sacrebleu.metrics import BLEU

    return BLEU(lowercase=True)


def chrf_scorer():
    """sacreBLEU's chrF with its defaults: chrF2 (character 6-grams, recall weighted twice), cased."""
    from sacrebleu.metrics import CHRF

    return CHRF()


def reports_bleu(d: TranslateData) -> bool:
    """The number task's targets are single German words: no 4-grams, so BLEU is always 0 there."""
    return d.dataset != "numbers"


def eval_notes(cfg: Config) -> dict[str, str]:
    """What `dl eval` prints beside the metrics: sacreBLEU's signatures (how the run's BLEU, when it
    reports one, and chrF were computed)."""
    notes = {}
    for name, scorer in (("bleu", bleu_scorer()), ("chrf", chrf_scorer())):
        if name == "bleu" and not reports_bleu(cfg.data):
            continue
        scorer.corpus_score(["a"], [["a"]])  # the signature names the reference count, known once scored
        notes[f"{name}_signature"] = str(scorer.get_signature())
    return notes


def bleu_totals(scorer, hypotheses: list[str], refs: list[str]) -> dict[str, torch.Tensor]:
    """BLEU's corpus statistics of a batch: n-gram matches and totals, hypothesis and reference lengths."""
    stats = scorer.corpus_score(hypotheses, [refs])
    totals = {}
    for n in range(4):
        totals[f"total.bleu_correct{n + 1}"] = torch.tensor(float(stats.counts[n]))
        totals[f"total.bleu_total{n + 1}"] = torch.tensor(float(stats.totals[n]))
    totals["total.sys_len"] = torch.tensor(float(stats.sys_len))
    totals["total.ref_len"] = torch.tensor(float(stats.ref_len))
    return totals


def bleu_from_totals(m: dict[str, float]) -> float:
    """Corpus BLEU from the n-gram match counts summed over batches (BLEU's statistics add up)."""
    from sacrebleu.metrics import BLEU

    correct = [round(m[f"total.bleu_correct{n}"]) for n in range(1, 5)]  # counts, summed as floats
    total = [round(m[f"total.bleu_total{n}"]) for n in range(1, 5)]
    return BLEU.compute_bleu(
        correct, total, round(m["total.sys_len"]), round(m["total.ref_len"]), smooth_method="exp"
    ).score


def chrf_totals(scorer, hypotheses: list[str], refs: list[str]) -> dict[str, torch.Tensor]:
    """chrF's corpus statistics of a batch ("total.chrf0", ...: hypothesis, reference and matched
    character/word n-gram counts), sums that add up across batches and ranks as BLEU's do."""
    from sacrebleu.utils import sum_of_lists

    stats = sum_of_lists(scorer._extract_corpus_statistics(hypotheses, [refs]))  # what corpus_score sums
    return {f"total.chrf{i}": torch.tensor(float(v)) for i, v in enumerate(stats)}


def chrf_from_totals(m: dict[str, float]) -> float:
    """Corpus chrF (0-100) from the statistics summed over batches."""
    count = sum(key.startswith("total.chrf") for key in m)  # 3 per character and word n-gram order
    stats = [round(m[f"total.chrf{i}"]) for i in range(count)]  # counts, summed as floats
    return chrf_scorer()._compute_score_from_stats(stats).score


def unwrap(net: nn.Module) -> nn.Module:
    """The Seq2SeqTransformer inside a torch.compile and/or DDP wrapper."""
    net = getattr(net, "_orig_mod", net)
    return getattr(net, "module", net)


# --------------------------------------------------------------------------- the task


def shape_signature(config: dict[str, Any]) -> dict[str, Any]:
    """The recipe values that fix the network's shape and the vocabulary (a resumed run keeps them)."""
    model, data = config["model"], config["data"]
    sig = {f"model.{k}": model[k] for k in ("dim", "heads", "encoder_layers", "decoder_layers", "ff_dim", "norm_first")}
    sig.update({f"data.{k}": data[k] for k in ("dataset", "root", "path", "source_lang", "target_lang", "vocab_size")})
    if data["dataset"] == "numbers":
        sig.update({"seed": config["seed"], "data.numbers_train": data["numbers_train"]})
    return sig


def make_batches(
    cfg: Config, encoded: dict[str, tuple[list[list[int]], list[list[int]]]], runtime: Runtime
) -> tuple[TokenBatches, dict[str, TokenBatches], int]:
    """The training batches, the evaluation splits' batches (val decoded greedily, test with
    decode.beam) and how many training pairs were left out for being longer than data.max_len
    (source + EOS, or BOS + target + EOS)."""
    d = cfg.data
    src_ids, tgt_ids = encoded["train"]
    keep = [i for i in range(len(src_ids)) if len(src_ids[i]) + 1 <= d.max_len and len(tgt_ids[i]) + 2 <= d.max_len]
    where = {"device": runtime.device, "rank": runtime.rank, "world_size": runtime.world_size}
    train_data = TokenBatches(
        [src_ids[i] for i in keep], [tgt_ids[i] for i in keep], d.max_tokens, seed=cfg.seed, split="train", **where
    )
    eval_data = {
        split: TokenBatches(
            *encoded[split],
            d.max_tokens,
            seed=cfg.seed,
            split=split,
            beam=1 if split == "val" else cfg.decode.beam,
            **where,
        )
        for split in encoded
        if split != "train"
    }
    return train_data, eval_data, len(src_ids) - len(keep)


def build(cfg: Config, runtime: Runtime, load_weights: bool = True) -> Job:
    d, decode = cfg.data, cfg.decode
    splits = load_splits(d, cfg.seed)
    train_src, train_tgt = splits["train"]
    tokenizer = train_tokenizer(train_src + train_tgt, d.vocab_size)
    encoded = {split: (encode(tokenizer, s), encode(tokenizer, t)) for split, (s, t) in splits.items()}
    train_data, eval_data, skipped_long = make_batches(cfg, encoded, runtime)
    model = build_model(cfg.model, tokenizer.get_vocab_size())
    scorer, chrf = bleu_scorer(), chrf_scorer()
    with_bleu = reports_bleu(d)

    def train_step(net: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        logits = net(batch.src, batch.tgt[:, :-1])
        target = batch.tgt[:, 1:]
        loss = F.cross_entropy(
            logits.flatten(0, 1), target.flatten(), ignore_index=PAD, label_smoothing=cfg.train.label_smoothing
        )
        return {"loss": loss}

    def eval_step(net: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        logits = net(batch.src, batch.tgt[:, :-1])
        target = batch.tgt[:, 1:]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=PAD, reduction="sum")
        metrics = {"loss": loss, "count": (target != PAD).sum()}
        if batch.beam:
            hypotheses = translate_batch(unwrap(net), tokenizer, batch.src, decode, batch.beam)
            refs = [splits[batch.split][1][i] for i in batch.index]
            if with_bleu:
                metrics.update(bleu_totals(scorer, hypotheses, refs))
            metrics.update(chrf_totals(chrf, hypotheses, refs))
            metrics["total.exact"] = torch.tensor(
                float(sum(h.strip() == r.strip() for h, r in zip(hypotheses, refs, strict=True)))
            )
            metrics["total.sentences"] = torch.tensor(float(len(refs)))
        return metrics

    def finish_metrics(m: dict[str, float]) -> dict[str, float]:
        m["ppl"] = float(torch.tensor(min(m["loss"], 700.0)).exp())
        if "total.sentences" in m:
            if with_bleu:
                m["bleu"] = bleu_from_totals(m)
            m["chrf"] = chrf_from_totals(m)
            m["exact"] = m["total.exact"] / max(1.0, m["total.sentences"])
        for key in [k for k in m if k.startswith("total.")]:
            del m[key]
        return m

    def export(net: nn.Module, run_dir: Path) -> None:
        write_text_atomic(run_dir / "tokenizer.json", tokenizer.to_str())
        if cfg.train.average_last:
            write_averaged_checkpoint(run_dir / "checkpoints")

    def keep_epoch_weights(net: nn.Module, epoch: int, run_dir: Path) -> None:
        if cfg.train.average_last:
            save_epoch_weights(net, epoch, run_dir / "checkpoints", cfg.train.average_last)

    return Job(
        model=model,
        train_data=train_data,
        eval_data=eval_data,
        train_step=train_step,
        eval_step=eval_step,
        best_metric="bleu" if with_bleu else "exact",
        best_mode="max",
        items_per_batch=lambda batch: batch.tokens,
        finish_metrics=finish_metrics,
        export=export,
        on_epoch_end=keep_epoch_weights,
        extra={
            "tokenizer": tokenizer.to_str(),
            "train_pairs": len(train_src) - skipped_long,
            "skipped_long": skipped_long,
        },
    )


# --------------------------------------------------------------------------- checkpoint averaging


def save_epoch_weights(model: nn.Module, epoch: int, folder: Path, keep: int) -> None:
    """checkpoints/epoch-NNN.weights.pt: the weights after `epoch`; only the newest `keep` stay."""
    checkpoint.save_atomic(model.state_dict(), folder / f"epoch-{epoch:03d}.weights.pt")
    for old in sorted(folder.glob("epoch-*.weights.pt"))[:-keep]:
        old.unlink()


def write_averaged_checkpoint(folder: Path) -> Path:
    """checkpoints/averaged.pt: last.pt with its weights replaced by the mean of the kept epochs'
    weights (Vaswani et al. average the last checkpoints; it smooths the end of training)."""
    files = sorted(folder.glob("epoch-*.weights.pt"))
    if not files:
        raise DlError(
            f"No epoch-*.weights.pt in {folder} to average: train.average_last keeps them at each epoch's end."
        )
    states = [checkpoint.load_weights(f) for f in files]
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
        else:
            averaged[key] = value
    record = checkpoint.load(folder / "last.pt")
    record.model = averaged
    record.weights = (
        "raw"  # what inference loads is the average in `model`, whichever weights last.pt's validation chose
    )
    record.extra = {**record.extra, "averaged_epochs": [f.name for f in files]}
    checkpoint.save(record, folder / "averaged.pt")
    return folder / "averaged.pt"


# --------------------------------------------------------------------------- translating


def translate_batch(
    model: Seq2SeqTransformer, tokenizer, src: torch.Tensor, decode: DecodeConfig, beam: int
) -> list[str]:
    """Detokenized translations of a padded batch of sources (B, S) (subwords + EOS)."""
    limit = max_length(src.shape[1], decode.max_len_a, decode.max_len_b)
    ids = beam_search(model, src, BOS, EOS, PAD, limit, beam, decode.length_penalty)
    return [decode_ids(tokenizer, row) for row in ids]


def restore_model(cfg: Config, extra: dict[str, Any]) -> tuple[Seq2SeqTransformer, dict[str, Any]]:
    """The transformer of a checkpoint and its tokenizer."""
    tokenizer = tokenizer_from_str(extra["tokenizer"])
    return build_model(cfg.model, tokenizer.get_vocab_size()), {"tokenizer": tokenizer}


def translate(
    run_dir: Path,
    sentences: list[str],
    beam: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
) -> list[dict[str, str]]:
    """`dl translate`: [{"source": S, "translation": T}, ...] from the run's best checkpoint.

    beam: the beam width (default: the recipe's decode.beam; 1 is greedy). Characters the
    vocabulary never saw read as <unk>; an empty sentence translates too.
    """
    run = loading.load_run(run_dir, device, task=NAME)
    return translate_sentences(run.model, run.assets["tokenizer"], run.config.decode, sentences, beam, batch_size)


def translate_sentences(
    model: Seq2SeqTransformer,
    tokenizer,
    decode: DecodeConfig,
    sentences: list[str],
    beam: int | None = None,
    batch_size: int = 64,
) -> list[dict[str, str]]:
    """[{"source": S, "translation": T}, ...] with a loaded model (eval mode), on its device.

    beam: the beam width (default: decode.beam; 1 is greedy).
    """
    beam = decode.beam if beam is None else beam
    if beam < 1:
        raise DlError(f"--beam must be >= 1 (got {beam}).")
    device = next(model.parameters()).device
    results = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start : start + batch_size]
        src = _pad([ids + [EOS] for ids in encode(tokenizer, chunk)]).to(device)
        for source, translation in zip(chunk, translate_batch(model, tokenizer, src, decode, beam), strict=True):
            results.append({"source": source, "translation": translation})
    return results


@torch.no_grad()
def cross_attention(
    run_dir: Path, source: str, translation: str, device: str | torch.device | None = None
) -> tuple[list[str], list[str], torch.Tensor]:
    """The last decoder layer's attention over the source, averaged over heads, while the model
    reads `translation`: source subwords, target subwords and weights (T, S), row t the step that
    predicts target subword t."""
    run = loading.load_run(run_dir, device, task=NAME)
    model, tokenizer, device = run.model, run.assets["tokenizer"], run.device
    src_ids = encode(tokenizer, [source])[0] + [EOS]
    tgt_ids = encode(tokenizer, [translation])[0] + [EOS]
    memory, src_pad = model.encode(torch.tensor([src_ids], device=device))
    _, weights = model.decode(torch.tensor([[BOS, *tgt_ids[:-1]]], device=device), memory, src_pad, need_weights=True)
    label = tokenizer.id_to_token
    return [label(i) for i in src_ids], [label(i) for i in tgt_ids], weights[0].mean(0).float().cpu()


def plot_attention(source_tokens: list[str], target_tokens: list[str], weights: torch.Tensor, out: Path) -> Path:
    """A heat map of `weights` (target x source) with the subwords as labels, saved as an image."""
    try:
        import matplotlib
    except ImportError:
        raise DlError("--attention draws with matplotlib: pip install 'dlcli[plot]' (or matplotlib).") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(
        figsize=(max(5.0, 1.5 + 0.45 * len(source_tokens)), max(3.0, 1.2 + 0.4 * len(target_tokens)))
    )
    ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, aspect="auto")
    ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=60, ha="right")
    ax.set_yticks(range(len(target_tokens)), target_tokens)
    ax.set_xlabel("source subwords")
    ax.set_ylabel("translation subwords")
    ax.set_title("cross-attention, last decoder layer (mean of heads)", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
