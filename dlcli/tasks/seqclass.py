"""Sequence classification: a label per sequence, with a recurrent network (task `seqclass`).

    dl train configs/brackets_gru.yaml                   # many-to-one: are these brackets balanced?

The classifier (dlcli/models/sequence_classifier.py) reads characters (or words) with an RNN and
classifies its final hidden state (both directions when bidirectional).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F

from dlcli.errors import DlError
from dlcli.models.sequence_classifier import SequenceClassifier
from dlcli.runner import Job
from dlcli.runtime import Runtime
from dlcli.tasks.sequence import Batches, counted_vocab, hold_out, index

# The recipe schema is in a torch-free module, for `dl config show`; the task's surface re-exports it.
from dlcli.tasks.sequence_config import SeqConfig, SeqData, SeqModel  # noqa: F401

NAME = "seqclass"
RUN_KIND = "a sequence classifier"  # in the error for a run of another task
Config = SeqConfig


def load_labelled(data: SeqData, seed: int) -> dict[str, list[tuple[list[str], str]]]:
    """Splits of (tokens, label)."""
    from dlcli.data.brackets import bracket_sequences, read_tsv_labels

    if data.dataset == "brackets":
        if data.min_len > data.max_len:
            raise DlError(f"data.min_len ({data.min_len}) is above data.max_len ({data.max_len}).")
        splits, seen = {}, set()
        for k, (name, n) in enumerate((("train", data.train_size), ("val", data.val_size), ("test", data.test_size))):
            pairs = bracket_sequences(seed * 3 + k, n, data.min_len, data.max_len)
            # evaluation strings never seen in training: the score measures generalisation
            splits[name] = [(list(text), str(label)) for text, label in pairs if name == "train" or text not in seen]
            seen |= {text for text, _ in pairs} if name == "train" else set()
        return splits
    if not data.train:
        raise DlError("data.dataset is 'tsv' but data.train is not set: give a file of text<TAB>label lines.")

    def tokens(text: str) -> list[str]:
        return list(text) if data.level == "char" else text.split()

    splits = {"train": [(tokens(t), label) for t, label in read_tsv_labels(data.train)]}
    if data.val:
        splits["val"] = [(tokens(t), label) for t, label in read_tsv_labels(data.val)]
    else:
        splits["val"], splits["train"] = hold_out(splits["train"], data.val_fraction, seed)
    if data.test:
        splits["test"] = [(tokens(t), label) for t, label in read_tsv_labels(data.test)]
    return splits


def build_classifier(m: SeqModel, n_tokens: int, n_labels: int) -> SequenceClassifier:
    """The network for the recipe's model section (dlcli/models/sequence_classifier.py)."""
    return SequenceClassifier(
        n_tokens,
        n_labels,
        arch=m.arch,
        embedding_dim=m.embedding_dim,
        hidden_size=m.hidden_size,
        num_layers=m.num_layers,
        bidirectional=m.bidirectional,
        dropout=m.dropout,
        impl=m.impl,
    )


def collate_labelled(examples: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
    longest = max(len(t) for t, _ in examples)
    tokens = torch.zeros(len(examples), longest, dtype=torch.long)
    for b, (t, _) in enumerate(examples):
        tokens[b, : len(t)] = torch.tensor(t)
    return {
        "tokens": tokens,
        "lengths": torch.tensor([max(1, len(t)) for t, _ in examples]),
        "labels": torch.tensor([label for _, label in examples]),
    }


def shape_signature(config: dict[str, Any]) -> dict[str, Any]:
    model, data = config["model"], config["data"]
    keys = ("arch", "embedding_dim", "hidden_size", "num_layers", "bidirectional")
    return {**{f"model.{k}": model[k] for k in keys}, "data.dataset": data["dataset"], "data.train": data["train"]}


def build(cfg: SeqConfig, runtime: Runtime, load_weights: bool = True) -> Job:
    splits = load_labelled(cfg.data, cfg.seed)
    counts = Counter(tok for tokens, _ in splits["train"] for tok in tokens)
    tokens = counted_vocab(counts, cfg.data.min_count)
    labels = sorted({label for _, label in splits["train"]})
    if len(labels) < 2:
        raise DlError(f"The training data has {len(labels)} label(s); a classifier needs at least 2.")
    t_index, l_index = index(tokens), index(labels)

    def encode(pairs):
        unknown = [label for _, label in pairs if label not in l_index]
        if unknown:
            raise DlError(f"Label '{unknown[0]}' does not occur in the training data ({', '.join(labels)}).")
        return [([t_index.get(t, 1) for t in toks], l_index[label]) for toks, label in pairs]

    loaders = {
        name: Batches(encode(pairs), cfg.data.batch_size, collate_labelled, cfg.seed, runtime, shuffle=name == "train")
        for name, pairs in splits.items()
    }
    model = build_classifier(cfg.model, len(tokens), len(labels))
    device = runtime.device

    def logits_of(net, batch):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        return net(batch["tokens"], batch["lengths"]).float(), batch["labels"]

    def train_step(net, batch):
        logits, labels_ = logits_of(net, batch)
        return {"loss": F.cross_entropy(logits, labels_)}

    def eval_step(net, batch):
        logits, labels_ = logits_of(net, batch)
        return {
            "loss": F.cross_entropy(logits, labels_, reduction="sum"),
            "accuracy": (logits.argmax(1) == labels_).sum(),
            "count": torch.tensor(len(labels_)),
        }

    return Job(
        model=model,
        train_data=loaders["train"],
        eval_data={k: v for k, v in loaders.items() if k != "train"},
        train_step=train_step,
        eval_step=eval_step,
        best_metric="accuracy",
        best_mode="max",
        items_per_batch=lambda batch: len(batch["labels"]),
        extra={"tokens": tokens, "labels": labels},
    )


def restore_model(cfg: SeqConfig, extra: dict[str, Any]) -> tuple[SequenceClassifier, dict[str, Any]]:
    """The classifier of a checkpoint and its labels (the classes, in output order)."""
    tokens, labels = extra["tokens"], extra["labels"]
    return build_classifier(cfg.model, len(tokens), len(labels)), {"classes": labels}


def eval_notes(cfg: SeqConfig) -> dict[str, str]:
    """Nothing to print beside the metrics."""
    return {}
