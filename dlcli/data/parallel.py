"""Sentence pairs for translation: paired files, TSV files, Multi30k, and the built-in number task.

    folder/train.de(.gz)  folder/train.en(.gz)     line i of one is the translation of line i of
    folder/val.de         folder/val.en            the other (the Multi30k layout; the test split
    folder/test_2016_flickr.de ...                 is named by the caller)

    pairs.tsv                                      source<TAB>target per line

Files are UTF-8, plain or gzip; bytes that are not UTF-8 become U+FFFD (counted in a warning,
see textfile.py) rather than stopping a long run, and blank pairs are kept (their line numbers must stay aligned).
"""

from __future__ import annotations

from pathlib import Path

from dlcli.data.download import fetch
from dlcli.data.numbers import number_pairs
from dlcli.data.textfile import open_text
from dlcli.errors import DlError

Pairs = tuple[list[str], list[str]]  # (sources, targets), equally long

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{name}"
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
# sha256 of the gzip files of multi30k/dataset (commit a3d2e0d), as the download is checked
MULTI30K_SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
}


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, plain or .gz, without their line breaks."""
    try:
        with open_text(path, newline="\n") as f:
            return [line.rstrip("\r\n") for line in f]
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; EOFError: a truncated .gz
        raise DlError(f"Cannot read {path}: {e}.") from None


def _split_file(folder: Path, split: str, lang: str) -> Path:
    for name in (f"{split}.{lang}", f"{split}.{lang}.gz"):
        if (folder / name).is_file():
            return folder / name
    raise DlError(
        f"No {split}.{lang} or {split}.{lang}.gz in {folder}: a parallel-text folder holds one file per split and "
        f"language, line i of {split}.{lang} translating line i of the other language's file."
    )


def read_paired_files(source: Path, target: Path) -> Pairs:
    """Two files whose lines translate each other; unequal line counts are an error."""
    sources, targets = read_lines(source), read_lines(target)
    if len(sources) != len(targets):
        raise DlError(
            f"{source} has {len(sources)} lines but {target} has {len(targets)}: line i of one must translate "
            "line i of the other. Check that both files are complete and come from the same version."
        )
    if not any(s.strip() for s in sources):
        raise DlError(f"{source} holds no text: a parallel corpus needs at least one non-empty sentence.")
    return sources, targets


def read_folder(folder: Path, split: str, source_lang: str, target_lang: str) -> Pairs:
    """A split of the Multi30k-style layout: folder/SPLIT.SRC(.gz) and folder/SPLIT.TGT(.gz)."""
    return read_paired_files(_split_file(folder, split, source_lang), _split_file(folder, split, target_lang))


def read_tsv(path: Path) -> Pairs:
    """source<TAB>target per line; blank lines are skipped, a line without a tab is an error."""
    if not path.is_file():
        raise DlError(f"{path} does not exist (relative paths start at the current directory, {Path.cwd()}).")
    sources, targets = [], []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DlError(f"{path}, line {number}: expected 'source<TAB>target', found no tab: {line[:80]!r}")
        source, target = line.split("\t", 1)
        sources.append(source)
        targets.append(target.split("\t")[0])
    if not any(s.strip() for s in sources):
        raise DlError(f"{path} holds no sentence pairs: give one 'source<TAB>target' pair per line.")
    return sources, targets


def multi30k(root: Path, split: str, source_lang: str = "de", target_lang: str = "en") -> Pairs:
    """A Multi30k split (train, val, test = test_2016_flickr), downloaded into `root` with its
    sha256 checked when it is not there; offline, the error names each file and where it goes."""
    name = MULTI30K_SPLITS[split]
    paths = []
    for lang in (source_lang, target_lang):
        file = f"{name}.{lang}.gz"
        if file not in MULTI30K_SHA256:
            raise DlError(
                f"Multi30k here has German (de) and English (en); data.source_lang/target_lang are {source_lang}/{target_lang}."
            )
        paths.append(
            fetch(MULTI30K_URL.format(name=file), Path(root) / file, MULTI30K_SHA256[file], what=f"Multi30k {file}")
        )
    return read_paired_files(*paths)


def number_splits(seed: int, train: int, val: int, test: int) -> dict[str, Pairs]:
    """The built-in task: English number words -> German number words, 0-999999.

    Training pairs come from number_pairs(seed, train); validation and test numbers are drawn
    from the same distribution but never occur in training (nor in each other), so exact match on
    them measures whether the model learned the rule, not the examples.
    """
    pairs = number_pairs(seed, train)
    seen = {source for source, _ in pairs}
    splits = {"train": ([s for s, _ in pairs], [t for _, t in pairs])}
    draw = iter(number_pairs(seed + 1, 20 * (val + test) + 1000))
    for split, size in (("val", val), ("test", test)):
        sources, targets = [], []
        while len(sources) < size:
            try:
                source, target = next(draw)
            except StopIteration:  # only when nearly every number is in training
                raise DlError(
                    f"Too few numbers are left outside the {train} training pairs for {size} {split} pairs."
                ) from None
            if source not in seen:
                seen.add(source)
                sources.append(source)
                targets.append(target)
        splits[split] = (sources, targets)
    return splits
