"""Language models over characters or words: an RNN, LSTM or GRU trained by truncated backprop.

    dl train configs/char_lstm.yaml                                # the built-in corpus, offline
    dl train configs/char_lstm_shakespeare.yaml                    # tiny-shakespeare (data.path)
    dl generate --run runs/char-lstm --prompt "The " --length 200 --temperature 0.8 --top-k 20

The training text is one token stream (characters, or whitespace-split words with an end-of-line
token), its last `data.val_fraction` held out as validation, as nanoGPT splits tiny-shakespeare.
The stream is cut into `batch_size` parallel streams and read in windows of `bptt` tokens (the
batchify layout of pytorch/examples' word_language_model), so row b of batch i+1 continues row b
of batch i:

    stream  a b c d e f g h i j k l m n o p q r s t u v w x      (N tokens, batch_size = 4)
    rows    a b c d e f | g h i j k l | m n o p q r | s t u v w x      (B, N // B)
    batch 0 = columns 0-1 (x), 1-2 (y);  batch 1 = columns 2-3 (x), 3-4 (y)   (bptt = 2)

The recurrent state therefore carries from batch to batch within an epoch, detached after each
one (truncated BPTT: gradients flow back `bptt` steps, the state remembers further). It is reset
to zeros at the start of every epoch and, on a resume in the middle of an epoch, at the resumed
batch (the checkpoint holds no hidden state), so only a resume at an epoch boundary is exact.
Evaluation reads the validation stream the same way with `eval_batch_size` streams. Losses are in
nats per token; perplexity = exp(loss) and, for characters, bits per character = loss / ln 2.

Generation feeds the prompt through the network, then samples one token at a time from
softmax(logits / temperature), restricted to the `top_k` most likely tokens when top_k > 0.

The networks are dlcli/models/recurrent_lm.py's RecurrentLM and dlcli/models/transformer.py's
TransformerLM; `build_model` chooses one from the recipe's `model.arch`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dlcli import loading
from dlcli.data.textfile import read_text
from dlcli.errors import DlError
from dlcli.files import write_json_atomic, write_text_atomic
from dlcli.models.recurrent_lm import RecurrentLM
from dlcli.models.transformer import TransformerLM
from dlcli.runner import Job
from dlcli.runtime import Runtime

# The recipe schema is in a torch-free module, for `dl config show`; the task's surface re-exports it.
from dlcli.tasks.lm_config import Config, LMData, LMModel, LMTrain  # noqa: F401

NAME = "lm"
RUN_KIND = "a language model"  # in the error for a run of another task

EOL, UNK = "<eol>", "<unk>"  # word level: the end of a line, and a validation word unseen in training
SAMPLE_LENGTH = {"char": 400, "word": 80}  # samples.txt: tokens after training


# --------------------------------------------------------------------------- text and vocabulary


def load_text(data: LMData, seed: int) -> str:
    """The whole corpus as one string (train first, validation last)."""
    if data.dataset == "builtin":
        from dlcli.data.tagged import generated_tagged

        return "".join(" ".join(s.words) + "\n" for s in generated_tagged(seed, data.builtin_sentences))
    if not data.path:
        raise DlError(
            "data.dataset is 'text' but data.path is not set: give a text file, e.g. --set data.path=input.txt"
        )
    path = Path(data.path)
    if not path.is_file():
        raise DlError(
            f"data.path: {path} does not exist (relative paths start at the current directory, {Path.cwd()}). "
            "Give a UTF-8 text file, or use the built-in corpus with --set data.dataset=builtin."
        )
    try:
        text = read_text(path)  # bytes that are not UTF-8 become U+FFFD, with a warning (as every corpus reader)
    except (OSError, EOFError) as e:  # unreadable, or a corrupt .gz
        raise DlError(f"data.path: cannot read {path} ({e}).") from None
    if not text.strip():
        raise DlError(
            f"data.path: {path} holds no text (it is empty or only whitespace). Give a UTF-8 text file to train on."
        )
    return text


def split_words(text: str) -> list[str]:
    """Whitespace-separated words, with EOL at each line break: 'a b\\nc' -> [a, b, <eol>, c]."""
    lines = text.split("\n")
    tokens: list[str] = []
    for i, line in enumerate(lines):
        tokens += line.split()
        if i < len(lines) - 1:
            tokens.append(EOL)
    return tokens


class Vocab:
    """Tokens <-> ids. Characters: the sorted characters of the whole text (as nanoGPT). Words: EOL,
    UNK, then the sorted words of the training split; other words read as UNK."""

    def __init__(self, level: str, tokens: list[str]):
        self.level, self.tokens = level, list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, level: str, text: str, train_tokens: list[str]) -> Vocab:
        if level == "char":
            return cls(level, sorted(set(text)))
        return cls(level, [EOL, UNK, *sorted(set(train_tokens) - {EOL, UNK})])

    def tokenize(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else split_words(text)

    def encode(self, tokens: list[str]) -> torch.Tensor:
        """(N,) int64 ids; an unknown word is UNK, an unknown character a DlError naming it."""
        if self.level == "word":
            unk = self.index[UNK]
            return torch.tensor([self.index.get(t, unk) for t in tokens], dtype=torch.long)
        missing = sorted(set(tokens) - self.index.keys())
        if missing:
            raise DlError(
                f"{', '.join(repr(c) for c in missing[:10])} {'is' if len(missing) == 1 else 'are'} not in the model's "
                f"vocabulary of {len(self)} characters: {''.join(self.tokens)!r}. Use only these characters."
            )
        return torch.tensor([self.index[t] for t in tokens], dtype=torch.long)

    def start_token(self) -> int:
        """What an empty prompt starts from: the line break, else the first token."""
        return self.index.get("\n" if self.level == "char" else EOL, 0)

    def detokenize(self, ids: list[int], after: str) -> str:
        """Text of `ids` following the text `after` (words: spaced, EOL as a line break)."""
        if self.level == "char":
            return "".join(self.tokens[i] for i in ids)
        out, previous = [], after
        for i in ids:
            token = self.tokens[i]
            piece = "\n" if token == EOL else (token if previous[-1:].isspace() or not previous else " " + token)
            out.append(piece)
            previous = piece
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        return cls(d["level"], d["tokens"])


def prepare(data: LMData, seed: int) -> tuple[Vocab, torch.Tensor, torch.Tensor]:
    """The vocabulary and the train and validation id streams, (N_train,) and (N_val,)."""
    text = load_text(data, seed)
    if data.level == "char":
        tokens = list(text)
    else:
        tokens = split_words(text)
    cut = int(len(tokens) * (1 - data.val_fraction))
    vocab = Vocab.build(data.level, text, tokens[:cut])
    ids = vocab.encode(tokens)
    return vocab, ids[:cut], ids[cut:]


# --------------------------------------------------------------------------- batches


class Chunk(NamedTuple):
    x: torch.Tensor  # (B, T) input ids
    y: torch.Tensor  # (B, T) the next tokens
    reset: bool  # the first chunk of a pass: start from a zero state


def batchify(ids: torch.Tensor, streams: int) -> torch.Tensor:
    """(N,) -> (streams, N // streams): the stream cut into equal rows, the remainder dropped."""
    n = ids.numel() // streams
    return ids[: n * streams].view(streams, n)


class StreamBatches:
    """Windows of `bptt` columns of the batchified stream, in order, built once on the device.

    Under DDP the stream is cut into batch_size x world_size rows and each rank reads its own
    contiguous block of rows. Training drops a last window shorter than bptt (a constant shape);
    evaluation keeps it, so every validation token counts.
    """

    def __init__(
        self,
        ids: torch.Tensor,
        streams: int,
        bptt: int,
        device: torch.device,
        *,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        what: str = "training",
        stateless: bool = False,
    ):
        self.stateless = stateless  # every window on its own (a transformer's context): no carried state
        rows = batchify(ids, streams * world_size)[rank * streams : (rank + 1) * streams]  # (B, n)
        n = rows.shape[1]
        count = (n - 1) // bptt if drop_last else math.ceil((n - 1) / bptt)
        if count < 1:
            raise DlError(
                f"The {what} text has {ids.numel()} tokens: too few for {streams * world_size} streams of more than "
                f"{bptt if drop_last else 1} tokens. Lower data.batch_size/eval_batch_size or data.bptt, or use more text."
            )
        rows = rows.to(device)
        # The full windows as one (count, B, T) tensor each for inputs and targets, copied once:
        # window i is then a contiguous (B, T) block, read without gathering, and a long text
        # costs two allocations, not two small tensors per window.
        self.count, self.full = count, (n - 1) // bptt
        span = self.full * bptt
        self.x = rows[:, :span].reshape(streams, self.full, bptt).transpose(0, 1).contiguous()
        self.y = rows[:, 1 : span + 1].reshape(streams, self.full, bptt).transpose(0, 1).contiguous()
        # Evaluation's last, shorter window (drop_last=False).
        self.tail = (
            (rows[:, span : n - 1].contiguous(), rows[:, span + 1 : n].contiguous()) if count > self.full else None
        )

    def __len__(self) -> int:
        return self.count

    def batches(self, epoch: int, start: int = 0) -> Iterator[Chunk]:
        for i in range(start, self.count):
            x, y = (self.x[i], self.y[i]) if i < self.full else self.tail
            yield Chunk(x, y, reset=self.stateless or i == start)


class WindowBatches:
    """A transformer's training windows: every epoch cuts the stream at another random offset
    into windows of `bptt` tokens and shuffles them, both drawn from (seed, epoch), so a resumed
    epoch repeats its order. Each window is a sample of its own (reset: no state carries).

    Under DDP each rank reads every world_size-th batch of the epoch's order.
    """

    def __init__(
        self,
        ids: torch.Tensor,
        batch_size: int,
        bptt: int,
        device: torch.device,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.ids, self.batch_size, self.bptt, self.seed = ids.to(device), batch_size, bptt, seed
        self.rank, self.world_size = rank, world_size
        windows = (ids.numel() - 1 - (bptt - 1)) // bptt  # the count at the largest offset
        self.count = windows // (batch_size * world_size)
        if self.count < 1:
            raise DlError(
                f"The training text has {ids.numel()} tokens: too few for a batch of {batch_size * world_size} windows "
                f"of {bptt} tokens. Lower data.batch_size or data.bptt, or use more text."
            )

    def __len__(self) -> int:
        return self.count

    def batches(self, epoch: int, start: int = 0) -> Iterator[Chunk]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        offset = int(torch.randint(self.bptt, (1,), generator=gen))
        windows = (self.ids.numel() - 1 - offset) // self.bptt
        order = torch.randperm(windows, generator=gen)[: self.count * self.batch_size * self.world_size]
        starts = (offset + order * self.bptt).view(self.count, self.world_size, self.batch_size)[:, self.rank]
        steps = torch.arange(self.bptt)
        for i in range(start, self.count):
            index = (starts[i][:, None] + steps).to(self.ids.device)  # (B, T)
            yield Chunk(self.ids[index], self.ids[index + 1], reset=True)


# --------------------------------------------------------------------------- the model


def build_model(m: LMModel, vocab_size: int, context: int) -> nn.Module:
    """The network for `model.arch` (the one place that switches on it); `context` (data.bptt) is
    how many tokens a transformer attends over."""
    if m.tie_weights and m.embedding_dim != m.hidden_size and m.arch != "transformer":
        raise DlError(
            f"model.tie_weights shares the embedding and output matrices, so model.embedding_dim ({m.embedding_dim}) "
            f"must equal model.hidden_size ({m.hidden_size}). Set them equal or tie_weights=false."
        )
    if m.arch in ("rnn", "lstm", "gru"):
        return RecurrentLM(
            vocab_size,
            arch=m.arch,
            embedding_dim=m.embedding_dim,
            hidden_size=m.hidden_size,
            num_layers=m.num_layers,
            dropout=m.dropout,
            tie_weights=m.tie_weights,
            impl=m.impl,
        )
    if m.embedding_dim % m.heads:
        raise DlError(
            f"model.embedding_dim ({m.embedding_dim}) must divide by model.heads ({m.heads}): each head gets "
            "embedding_dim / heads dimensions."
        )
    return TransformerLM(
        vocab_size,
        context,
        dim=m.embedding_dim,
        heads=m.heads,
        layers=m.num_layers,
        ff_dim=m.ff_dim,
        dropout=m.dropout,
        norm_first=m.norm_first,
        positions=m.positions,
        tie_weights=m.tie_weights,
    )


def detach(state: Any) -> Any:
    """Cut the graph behind the carried state (truncated BPTT)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


# --------------------------------------------------------------------------- the task


def shape_signature(config: dict[str, Any]) -> dict[str, Any]:
    """The recipe values that fix the network's shape and the vocabulary (a resumed run keeps them)."""
    model, data = config["model"], config["data"]
    sig = {f"model.{k}": model[k] for k in ("arch", "embedding_dim", "hidden_size", "num_layers", "tie_weights")}
    if model["arch"] == "transformer":
        sig.update({f"model.{k}": model[k] for k in ("heads", "ff_dim", "norm_first", "positions")})
        sig["data.bptt"] = data["bptt"]  # the context: the learned position table's length
    sig.update({f"data.{k}": data[k] for k in ("dataset", "path", "level", "val_fraction", "builtin_sentences")})
    if data["dataset"] == "builtin":
        sig["seed"] = config["seed"]  # the built-in text (so its vocabulary) comes from the seed
    return sig


def build(cfg: Config, runtime: Runtime, load_weights: bool = True) -> Job:
    d = cfg.data
    vocab, train_ids, val_ids = prepare(d, cfg.seed)
    model = build_model(cfg.model, len(vocab), d.bptt)
    where = {"device": runtime.device, "rank": runtime.rank, "world_size": runtime.world_size}
    stateless = cfg.model.arch == "transformer"
    if stateless:
        train_data: StreamBatches | WindowBatches = WindowBatches(
            train_ids, d.batch_size, d.bptt, seed=cfg.seed, **where
        )
    else:
        train_data = StreamBatches(train_ids, d.batch_size, d.bptt, **where)
    val_data = StreamBatches(
        val_ids, d.eval_batch_size, d.bptt, drop_last=False, what="validation", stateless=stateless, **where
    )
    state: dict[str, Any] = {"train": None, "eval": None}  # the carried states (not buffers: DDP would broadcast them)

    def train_step(net: nn.Module, chunk: Chunk) -> dict[str, torch.Tensor]:
        logits, new = net(chunk.x, None if chunk.reset else state["train"])
        state["train"] = detach(new)
        return {"loss": F.cross_entropy(logits.flatten(0, 1), chunk.y.flatten())}

    def eval_step(net: nn.Module, chunk: Chunk) -> dict[str, torch.Tensor]:
        logits, state["eval"] = net(chunk.x, None if chunk.reset else state["eval"])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), chunk.y.flatten(), reduction="sum")
        return {"loss": loss, "count": torch.full((), chunk.y.numel(), dtype=torch.float64, device=loss.device)}

    def finish_metrics(m: dict[str, float]) -> dict[str, float]:
        m["ppl"] = math.exp(min(m["loss"], 700.0))
        if d.level == "char":
            m["bpc"] = m["loss"] / math.log(2)
        return m

    def export(net: nn.Module, run_dir: Path) -> None:
        write_json_atomic(run_dir / "vocab.json", vocab.to_dict(), ensure_ascii=False)
        text = sample(net, vocab, "", SAMPLE_LENGTH[d.level], temperature=0.8, top_k=0, seed=cfg.seed)
        write_text_atomic(run_dir / "samples.txt", text + "\n")

    return Job(
        model=model,
        train_data=train_data,
        eval_data={"val": val_data},
        train_step=train_step,
        eval_step=eval_step,
        best_metric="loss",
        best_mode="min",
        items_per_batch=lambda chunk: chunk.x.numel(),  # tokens
        finish_metrics=finish_metrics,
        export=export,
        extra={"vocab": vocab.to_dict(), "train_tokens": train_ids.numel(), "val_tokens": val_ids.numel()},
    )


def restore_model(cfg: Config, extra: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The language model of a checkpoint and its vocabulary."""
    vocab = Vocab.from_dict(extra["vocab"])
    return build_model(cfg.model, len(vocab), cfg.data.bptt), {"vocab": vocab}


def eval_notes(cfg: Config) -> dict[str, str]:
    """Nothing to print beside the metrics."""
    return {}


# --------------------------------------------------------------------------- generation


@torch.no_grad()
def sample(
    model: nn.Module, vocab: Vocab, prompt: str, length: int, temperature: float = 1.0, top_k: int = 0, seed: int = 0
) -> str:
    """`prompt` followed by `length` sampled tokens (characters or words), on the model's device.

    Args:
        temperature: divides the logits; < 1 sharper, > 1 flatter. top_k: sample among the k most
            likely tokens only (0: all; 1: greedy). seed: the sampling generator's seed.
    """
    if temperature <= 0:
        raise DlError(f"--temperature must be > 0 (got {temperature}); use --top-k 1 for greedy decoding.")
    if top_k < 0 or length < 0:
        raise DlError(f"--top-k and --length must be >= 0 (got {top_k}, {length}).")
    ids = vocab.encode(vocab.tokenize(prompt))
    if isinstance(model, TransformerLM):
        ids = ids[-model.context :]  # the window it can attend over
    if ids.numel() == 0:  # nothing to continue: start as after a line break
        ids = torch.tensor([vocab.start_token()])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen = torch.Generator(device).manual_seed(seed)
    logits, state = model(ids.to(device)[None], None)  # the prompt in one pass: (1, P, V)
    out: list[int] = []
    for _ in range(length):
        scores = logits[0, -1].float() / temperature  # (V,)
        if 0 < top_k < scores.numel():
            kth = torch.topk(scores, top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        token = torch.multinomial(torch.softmax(scores, -1), 1, generator=gen)  # (1,)
        out.append(int(token))
        logits, state = model(token[None], state)
    model.train(was_training)
    return prompt + vocab.detokenize(out, after=prompt)


def generate(
    run_dir: Path,
    prompt: str = "",
    length: int = 200,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> str:
    """`dl generate`: the run's best checkpoint continues `prompt` by `length` tokens; returns prompt + continuation."""
    run = loading.load_run(run_dir, device, task=NAME)
    return sample(run.model, run.assets["vocab"], prompt, length, temperature, top_k, seed)
