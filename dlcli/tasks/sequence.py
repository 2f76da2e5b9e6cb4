"""What the recurrent sequence tasks share: `tag` (dlcli/tasks/tag.py, a label per token) and
`seqclass` (dlcli/tasks/seqclass.py, a label per sequence). Token vocabularies, held-out splits,
length-bucketed batches. Their networks, and the packed RNN encoder they share, are in dlcli/models/
(tagger.py, sequence_classifier.py, rnn.py).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from dlcli.data.loaders import epoch_order, mix_seed
from dlcli.runtime import Runtime

PAD, UNK = "<pad>", "<unk>"  # index 0 and 1 of every token vocabulary


def index(tokens: Sequence[str]) -> dict[str, int]:
    return {token: i for i, token in enumerate(tokens)}


def counted_vocab(counts: Counter, min_count: int) -> list[str]:
    """PAD, UNK, then the tokens seen at least min_count times, most frequent first (ties: first seen)."""
    return [PAD, UNK] + [token for token, n in counts.most_common() if n >= min_count]


def hold_out(train: list, fraction: float, seed: int) -> tuple[list, list]:
    """(val, train): a seeded random `fraction` of the training examples (at least one) set aside."""
    shuffled = list(train)
    random.Random(seed).shuffle(shuffled)
    n_val = max(1, round(len(shuffled) * fraction))
    return shuffled[:n_val], shuffled[n_val:]


class Batches:
    """Examples in batches of `batch_size`, reshuffled every epoch from (seed, epoch), this rank's share.

    Batches hold sentences of similar length (sorted within pools of 50 batches, as bucketing
    samplers do), so little of a padded batch is padding.
    """

    def __init__(self, examples: list, batch_size: int, collate, seed: int, runtime: Runtime, shuffle: bool):
        self.examples, self.batch_size, self.collate, self.seed = examples, batch_size, collate, seed
        self.rank, self.world, self.shuffle = runtime.rank, runtime.world_size, shuffle

    def _order(self, epoch: int) -> list[list[int]]:
        order = epoch_order(len(self.examples), epoch, self.seed, self.shuffle, self.rank, self.world, drop_last=False)
        pool = self.batch_size * 50
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: len(self.examples[i][0]))
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            random.Random(mix_seed(self.seed, epoch)).shuffle(batches)
        return batches

    def __len__(self) -> int:
        share = -(-len(self.examples) // self.world)
        pools = [min(self.batch_size * 50, share - start) for start in range(0, share, self.batch_size * 50)]
        return sum(-(-p // self.batch_size) for p in pools)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        for indices in self._order(epoch)[start:]:
            yield self.collate([self.examples[i] for i in indices])
