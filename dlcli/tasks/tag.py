"""Part-of-speech tagging: a label per token, with a recurrent network (task `tag`).

    dl train configs/pos_lstm.yaml
    dl tag "The wide road shimmered in the hot sun ." --run runs/pos-lstm
    dl eval runs/pos-lstm --split test --json            # accuracy, OOV accuracy, per-tag precision/recall

The tagger (Plank et al. 2016, Lample et al. 2016; the network is dlcli/models/tagger.py): each
word is its embedding (lowercased lookup, optionally initialised from word2vec vectors) joined
with a character-level encoding (a CNN or a BiLSTM over its characters, so unseen words still get
a representation from their spelling), then a bidirectional RNN over the sentence and a linear
layer per token. Sentences of a batch are padded and packed, so the RNN never reads the padding.
This module reads the data, builds the vocabularies and the network from the recipe, and trains
with word dropout (Kiperwasser & Goldberg 2016).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlcli import loading
from dlcli.errors import DlError
from dlcli.models.tagger import Tagger
from dlcli.runner import Job
from dlcli.runtime import Runtime
from dlcli.tasks.sequence import PAD, UNK, Batches, counted_vocab, hold_out, index

# The recipe schema is in a torch-free module, for `dl config show`; the task's surface re-exports it.
from dlcli.tasks.sequence_config import TagConfig, TagData, TagModel, TagTrain  # noqa: F401

NAME = "tag"
RUN_KIND = "a tagger"  # in the error for a run of another task
Config = TagConfig
IGNORE = -100  # cross_entropy's ignore_index: the label of padding positions


# --------------------------------------------------------------------------- tagging: data


@dataclass
class TagVocab:
    words: list[str]  # lowercased; PAD, UNK first
    chars: list[str]
    tags: list[str]
    train_words: set[str]  # seen in training: the rest are out-of-vocabulary in the metrics

    def to_extra(self) -> dict[str, Any]:
        return {"words": self.words, "chars": self.chars, "tags": self.tags, "train_words": sorted(self.train_words)}

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> TagVocab:
        return cls(extra["words"], extra["chars"], extra["tags"], set(extra["train_words"]))


def load_tagged(data: TagData, seed: int) -> dict[str, list]:
    """Splits of (words, tags) sentences: train, val and (when there is one) test."""
    from dlcli.data.tagged import generated_tagged, read_conllu

    if data.dataset == "generated":
        total = data.train_sentences + data.val_sentences + data.test_sentences
        sentences = generated_tagged(seed, total)
        a, b = data.train_sentences, data.train_sentences + data.val_sentences
        return {"train": sentences[:a], "val": sentences[a:b], "test": sentences[b:]}
    if not data.train:
        raise DlError(
            "data.dataset is 'conllu' but data.train is not set: give a .conllu file, e.g. --set data.train=en_ewt-ud-train.conllu.gz"
        )
    splits = {"train": read_conllu(data.train, data.column)}
    if data.val:
        splits["val"] = read_conllu(data.val, data.column)
    else:
        splits["val"], splits["train"] = hold_out(splits["train"], data.val_fraction, seed)
    if data.test:
        splits["test"] = read_conllu(data.test, data.column)
    return splits


def build_tag_vocab(train: list, model_cfg: TagModel, data: TagData, pretrained=None) -> TagVocab:
    counts = Counter(w.lower() for words, _ in train for w in words)
    words = counted_vocab(counts, data.min_count)
    if pretrained is not None:
        known = set(words)
        words += [w for w in pretrained.words[: model_cfg.pretrained_limit] if w not in known]
    chars = [PAD, UNK] + sorted({c for sentence, _ in train for w in sentence for c in w})
    tags = sorted({t for _, sentence_tags in train for t in sentence_tags})
    return TagVocab(words, chars, tags, set(counts))


def encode_tagged(sentences: list, vocab: TagVocab, max_word_length: int) -> list[tuple]:
    """Per sentence: (word ids, char ids per word, tag ids, OOV flags); unknown tags are an error."""
    w_index, c_index, t_index = index(vocab.words), index(vocab.chars), index(vocab.tags)
    examples = []
    for words, tags in sentences:
        unknown = [t for t in tags if t not in t_index]
        if unknown:
            raise DlError(f"Tag '{unknown[0]}' is not among the training tags ({', '.join(vocab.tags)}).")
        examples.append(
            (
                [w_index.get(w.lower(), 1) for w in words],
                [[c_index.get(c, 1) for c in w[:max_word_length]] or [1] for w in words],
                [t_index[t] for t in tags],
                [w.lower() not in vocab.train_words for w in words],
            )
        )
    return examples


def collate_tagged(examples: list[tuple]) -> dict[str, torch.Tensor]:
    batch, longest = len(examples), max(len(e[0]) for e in examples)
    longest_word = max(len(c) for e in examples for c in e[1])
    words = torch.zeros(batch, longest, dtype=torch.long)
    chars = torch.zeros(batch, longest, longest_word, dtype=torch.long)
    tags = torch.full((batch, longest), IGNORE, dtype=torch.long)
    oov = torch.zeros(batch, longest, dtype=torch.bool)
    for b, (w, c, t, o) in enumerate(examples):
        n = len(w)
        words[b, :n], tags[b, :n], oov[b, :n] = torch.tensor(w), torch.tensor(t), torch.tensor(o)
        for i, cs in enumerate(c):
            chars[b, i, : len(cs)] = torch.tensor(cs)
    lengths = torch.tensor([len(e[0]) for e in examples])
    return {"words": words, "chars": chars, "tags": tags, "oov": oov, "lengths": lengths}


# --------------------------------------------------------------------------- tagging: model


def build_tagger(m: TagModel, vocab: TagVocab) -> Tagger:
    """The network for the recipe's model section, sized by the vocabularies (dlcli/models/tagger.py)."""
    return Tagger(
        len(vocab.words),
        len(vocab.chars),
        len(vocab.tags),
        embedding_dim=m.embedding_dim,
        char_encoder=m.char_encoder,
        char_dim=m.char_dim,
        char_hidden=m.char_hidden,
        arch=m.arch,
        hidden_size=m.hidden_size,
        num_layers=m.num_layers,
        bidirectional=m.bidirectional,
        dropout=m.dropout,
        impl=m.impl,
    )


def _word_dropout(words: torch.Tensor, singletons: torch.Tensor, p: float) -> torch.Tensor:
    """Replace words seen once in train by <unk> with probability p: <unk> gets trained (Kiperwasser & Goldberg 2016)."""
    if p <= 0:
        return words
    drop = singletons[words] & (torch.rand(words.shape, device=words.device) < p)
    return words.masked_fill(drop, 1)


def shape_signature(config: dict[str, Any]) -> dict[str, Any]:
    model, data = config["model"], config["data"]
    keys = (
        "arch",
        "embedding_dim",
        "char_encoder",
        "char_dim",
        "char_hidden",
        "hidden_size",
        "num_layers",
        "bidirectional",
        "pretrained_vectors",
        "pretrained_limit",
    )
    return {
        **{f"model.{k}": model[k] for k in keys},
        "data.dataset": data["dataset"],
        "data.train": data["train"],
        "data.column": data["column"],
        "data.min_count": data["min_count"],
    }


def build(cfg: TagConfig, runtime: Runtime, load_weights: bool = True, vocab: TagVocab | None = None) -> Job:
    splits = load_tagged(cfg.data, cfg.seed)
    pretrained = _pretrained(cfg.model) if vocab is None else None
    vocab = vocab or build_tag_vocab(splits["train"], cfg.model, cfg.data, pretrained)
    model = build_tagger(cfg.model, vocab)
    if pretrained is not None and load_weights:
        _init_embeddings(model.words, vocab.words, pretrained)
    counts = Counter(w.lower() for words, _ in splits["train"] for w in words)
    singletons = torch.tensor([counts.get(w, 0) == 1 for w in vocab.words], device=runtime.device)
    loaders = {
        name: Batches(
            encode_tagged(sentences, vocab, cfg.data.max_word_length),
            cfg.data.batch_size,
            collate_tagged,
            cfg.seed,
            runtime,
            shuffle=name == "train",
        )
        for name, sentences in splits.items()
    }
    device = runtime.device

    def forward(net: nn.Module, batch: dict[str, torch.Tensor], train: bool) -> tuple[torch.Tensor, dict]:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        words = _word_dropout(batch["words"], singletons, cfg.model.word_dropout) if train else batch["words"]
        return net(words, batch["chars"], batch["lengths"]), batch

    def train_step(net: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, batch = forward(net, batch, train=True)
        return {"loss": F.cross_entropy(logits.flatten(0, 1).float(), batch["tags"].flatten(), ignore_index=IGNORE)}

    def eval_step(net: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, batch = forward(net, batch, train=False)
        return tag_metric_sums(logits, batch["tags"], batch["oov"], vocab.tags)

    return Job(
        model=model,
        train_data=loaders["train"],
        eval_data={k: v for k, v in loaders.items() if k != "train"},
        train_step=train_step,
        eval_step=eval_step,
        best_metric="accuracy",
        best_mode="max",
        items_per_batch=lambda batch: int(batch["lengths"].sum()),
        finish_metrics=lambda m: finish_tag_metrics(m, vocab.tags),
        extra=vocab.to_extra(),
    )


def tag_metric_sums(
    logits: torch.Tensor, tags: torch.Tensor, oov: torch.Tensor, tag_names: list[str]
) -> dict[str, torch.Tensor]:
    """Sums over real tokens: correct, OOV tokens and their correct ones, and per tag tp / predicted / gold."""
    real = tags != IGNORE
    predicted = logits.argmax(-1)
    correct = (predicted == tags) & real
    sums = {
        "accuracy": correct.sum(),
        "oov_accuracy": (correct & oov).sum(),
        "oov_count": (oov & real).sum(),
        "count": real.sum(),
    }
    for i, tag in enumerate(tag_names):
        sums[f"tp.{tag}"] = (correct & (tags == i)).sum()
        sums[f"pred.{tag}"] = ((predicted == i) & real).sum()
        sums[f"gold.{tag}"] = (tags == i).sum()
    return sums


def finish_tag_metrics(m: dict[str, float], tag_names: list[str]) -> dict[str, float]:
    """The runner divided every sum by the token count; ratios of sums survive that."""
    out = {
        "accuracy": m["accuracy"],
        "oov_accuracy": m["oov_accuracy"] / m["oov_count"] if m["oov_count"] else 0.0,
        "oov_share": m["oov_count"],
    }
    for tag in tag_names:
        tp, pred, gold = m[f"tp.{tag}"], m[f"pred.{tag}"], m[f"gold.{tag}"]
        if gold or pred:
            out[f"precision.{tag}"] = tp / pred if pred else 0.0
            out[f"recall.{tag}"] = tp / gold if gold else 0.0
    return out


def _pretrained(model_cfg: TagModel):
    if not model_cfg.pretrained_vectors:
        return None
    from dlcli.vectors import load_word2vec_format

    path = Path(model_cfg.pretrained_vectors)
    if path.is_dir():  # a word2vec run folder
        from dlcli.vectors import vectors_for_run

        vectors = vectors_for_run(path)
    else:
        vectors = load_word2vec_format(path)
    if vectors.vectors.shape[1] != model_cfg.embedding_dim:
        raise DlError(
            f"model.pretrained_vectors has {vectors.vectors.shape[1]} dimensions; set model.embedding_dim to that."
        )
    return vectors


def _init_embeddings(embedding: nn.Embedding, words: list[str], pretrained) -> None:
    found = [(i, pretrained.index[w]) for i, w in enumerate(words) if w in pretrained.index]
    if found:
        rows, source = zip(*found, strict=True)
        with torch.no_grad():
            embedding.weight[list(rows)] = torch.from_numpy(pretrained.vectors[list(source)]).float()


def restore_model(cfg: TagConfig, extra: dict[str, Any]) -> tuple[Tagger, dict[str, Any]]:
    """The tagger of a checkpoint and its vocabularies (words, characters, tags)."""
    vocab = TagVocab.from_extra(extra)
    return build_tagger(cfg.model, vocab), {"vocab": vocab}


def eval_notes(cfg: TagConfig) -> dict[str, str]:
    """Nothing to print beside the metrics."""
    return {}


# --------------------------------------------------------------------------- tagging: inference

_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")


def tag(run_dir: Path, sentence: str, device: str | torch.device = "cpu") -> list[dict[str, str]]:
    """Tag one sentence with a trained run: [{"token": T, "tag": G}, ...]. Words and punctuation are split apart."""
    run = loading.load_run(run_dir, device, task=NAME)
    return tag_sentence(run.model, run.assets["vocab"], run.config, sentence)


def tag_sentence(model: Tagger, vocab: TagVocab, cfg: TagConfig, sentence: str) -> list[dict[str, str]]:
    """Tag one sentence with a loaded tagger (eval mode), on the model's device."""
    device = next(model.parameters()).device
    tokens = _TOKEN.findall(sentence)
    if not tokens:
        raise DlError("The sentence has no words to tag.")
    example = encode_tagged([(tokens, [vocab.tags[0]] * len(tokens))], vocab, cfg.data.max_word_length)
    batch = {k: v.to(device) for k, v in collate_tagged(example).items()}
    with torch.no_grad():
        predicted = model(batch["words"], batch["chars"], batch["lengths"]).argmax(-1)[0]
    return [{"token": t, "tag": vocab.tags[i]} for t, i in zip(tokens, predicted.tolist(), strict=True)]
