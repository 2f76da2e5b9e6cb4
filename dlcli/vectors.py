"""Trained word vectors, kept apart from training state: files, analogies, neighbours, plots.

    dl analogy king man woman --run runs/word2vec          # king - man + woman -> queen
    dl analogy --eval questions-words.txt --vectors vectors.bin
    dl similar france --vectors vectors.txt

Files are word2vec.c's two formats, which gensim, fastText and most tools read and write:
a header line "V D", then one vector per word, most frequent word first, as text
(`word v1 ... vD`) or binary (`word `, D little-endian float32, `\\n`).

Similarity is cosine, computed as dot products of unit vectors (one cached (V, D) matrix).
"""

from __future__ import annotations

import difflib
import gzip
import io
import os
from pathlib import Path
from typing import IO, Literal

import numpy as np

from dlcli.errors import DlError
from dlcli.files import temp_path

Method = Literal["add", "mul"]
METHODS = ("add", "mul")

# Levy & Goldberg (2014) add this to 3CosMul's denominator against division by zero; as gensim.
COSMUL_EPS = 1e-6


class WordVectors:
    """One vector per word, rows in vocabulary order (most frequent first, as trained)."""

    def __init__(self, words: list[str], vectors: np.ndarray, counts: list[int] | None = None):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"{len(words)} words but vectors of shape {vectors.shape}")
        if counts is not None and len(counts) != len(words):
            raise ValueError(f"{len(words)} words but {len(counts)} counts")
        self.words = list(words)
        self.vectors = vectors  # (V, D)
        self.counts = counts
        # A word listed twice keeps its first (more frequent) row, as gensim does.
        self.index: dict[str, int] = {}
        for i, word in enumerate(self.words):
            self.index.setdefault(word, i)
        self._unit: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def unit(self) -> np.ndarray:
        """(V, D) rows scaled to length 1, computed once; an all-zero row stays zero."""
        if self._unit is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._unit = self.vectors / np.maximum(norms, np.finfo(np.float32).tiny)
        return self._unit

    def find(self, word: str) -> int | None:
        """The row of a word, or None; our vocabularies are lowercase, so 'King' finds 'king'."""
        if word in self.index:
            return self.index[word]
        return self.index.get(word.lower())

    def lookup(self, word: str) -> int:
        """The row of a word; a word outside the vocabulary is a DlError that names it."""
        row = self.find(word)
        if row is None:
            raise DlError(f"'{word}' is not in the vocabulary ({len(self)} words).{self._close_words(word)}")
        return row

    def query(self, word: str) -> tuple[int | None, np.ndarray]:
        """(its row, or None for a word composed from its n-grams; its unit vector (D,)): what every
        query (similar, analogy, cosine) asks. Here a word outside the vocabulary is a DlError."""
        row = self.lookup(word)
        return row, self.unit[row]

    def _close_words(self, word: str) -> str:
        close = difflib.get_close_matches(word.lower(), self.words[:20_000], n=3)
        return f" Close words: {', '.join(close)}." if close else ""


class SubwordVectors(WordVectors):
    """A fastText run's vectors (model.subwords): the vocabulary's composed vectors, and the n-gram
    matrix that gives any other word a vector (Bojanowski et al. 2017; models/subwords.py)."""

    def __init__(
        self,
        words: list[str],
        vectors: np.ndarray,
        ngram_vectors: np.ndarray,
        min_n: int,
        max_n: int,
        counts: list[int] | None = None,
    ):
        super().__init__(words, vectors, counts)
        if ngram_vectors.ndim != 2 or ngram_vectors.shape[1] != self.dim:
            raise ValueError(f"n-gram vectors of shape {ngram_vectors.shape} for {self.dim}-dimensional words")
        self.ngram_vectors = ngram_vectors  # (buckets, D), maybe memory-mapped
        self.min_n, self.max_n = min_n, max_n

    def vector(self, word: str) -> np.ndarray:
        """(D,) a word's vector: its composed row in the vocabulary (gensim's wv[word]), else the mean of its
        n-gram rows (lowercased, as the corpus was); a word with no n-gram of min_n..max_n is a DlError."""
        row = self.find(word)
        if row is not None:
            return self.vectors[row]
        from dlcli.models.subwords import compose_unseen

        vector = compose_unseen(word.lower(), self.ngram_vectors, self.min_n, self.max_n)
        if vector is None:
            raise DlError(
                f"'{word}' is not in the vocabulary ({len(self)} words) and has no character n-gram of "
                f"{self.min_n} to {self.max_n} characters (of '<{word.lower()}>') to compose it from.{self._close_words(word)}"
            )
        return vector

    def query(self, word: str) -> tuple[int | None, np.ndarray]:
        row = self.find(word)
        if row is not None:
            return row, self.unit[row]
        vector = self.vector(word)
        return None, vector / max(float(np.linalg.norm(vector)), float(np.finfo(np.float32).tiny))


# --------------------------------------------------------------------------- files


def save_word2vec_format(wv: WordVectors, path: Path, binary: bool = False) -> None:
    """Write word2vec.c's text or binary format (gzip if the name ends in .gz), atomically.

    The file appears complete or not at all: it is written next to its final name and renamed,
    so a crash never leaves a truncated vectors file for `dl analogy` to choke on.
    Text uses 9 significant digits, enough for every float32 to read back bit-exact.
    """
    path = Path(path)
    for word in wv.words:
        if not word or any(ch.isspace() for ch in word):
            raise DlError(f"Cannot save the word {word!r} in word2vec format: words are separated by spaces.")
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(), not mkstemp: the file gets the umask's mode (0644 under umask 022), not mkstemp's 0600.
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as raw:
            f = gzip.GzipFile(fileobj=raw, mode="wb", filename=path.stem) if path.suffix == ".gz" else raw
            with f:
                _write(f, wv, binary)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write(f: IO[bytes], wv: WordVectors, binary: bool) -> None:
    f.write(f"{len(wv)} {wv.dim}\n".encode())
    rows = wv.vectors.astype("<f4")  # little-endian whatever the machine, as the format says
    line = " ".join(["%.9g"] * wv.dim)
    for start in range(0, len(wv), 10_000):  # few large writes: gzip compresses per write call
        chunk = zip(wv.words[start : start + 10_000], rows[start : start + 10_000])
        if binary:
            f.write(b"".join(word.encode("utf-8") + b" " + row.tobytes() + b"\n" for word, row in chunk))
        else:
            f.write("".join(f"{word} {line % tuple(row.tolist())}\n" for word, row in chunk).encode("utf-8"))


def load_word2vec_format(path: Path, limit: int | None = None, binary: bool | None = None) -> WordVectors:
    """Read word2vec.c's text or binary format, plain or .gz; `binary=None` tells them apart.

    `limit` reads only the first `limit` words (the most frequent). Bytes that are not UTF-8
    are replaced (U+FFFD) rather than failing, as vectors trained on raw web text have them.
    """
    path = Path(path)
    if not path.is_file():
        raise DlError(f"Vectors file {path} does not exist.")
    try:
        with open(path, "rb") as raw, _buffered(raw, path) as f:
            count, dim = _read_header(f, path)
            n = count if limit is None else min(count, max(0, limit))
            if binary is None:
                binary = not _looks_like_text(f.peek(1 << 16), dim)
            words, vectors = (_read_binary if binary else _read_text)(f, n, dim, path)
    except (OSError, EOFError) as e:  # gzip's errors for a damaged or truncated file
        raise DlError(f"Cannot read vectors file {path}: {e}") from None
    return WordVectors(words, vectors)


def _buffered(raw: IO[bytes], path: Path) -> io.BufferedReader:
    """A 1 MiB read buffer: peek() then sees the whole first vector line, even at 1000s of dims."""
    return io.BufferedReader(gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw, buffer_size=1 << 20)


def _read_header(f: IO[bytes], path: Path) -> tuple[int, int]:
    header = f.readline().decode("utf-8", errors="replace").split()
    try:
        count, dim = (int(x) for x in header)
    except ValueError:
        raise DlError(
            f"{path} line 1: expected the word2vec header 'VOCAB_SIZE DIM', got {' '.join(header)[:60]!r}. "
            "(GloVe files have no header: add one.)"
        ) from None
    if count < 0 or dim < 1:
        raise DlError(f"{path} line 1: bad header '{count} {dim}'.")
    return count, dim


def _looks_like_text(head: bytes, dim: int) -> bool:
    """Text if the first vector line is a word and `dim` numbers; binary floats almost never are."""
    line = head.split(b"\n", 1)[0]
    parts = line.split()
    if len(parts) != dim + 1:
        return False
    try:
        [float(x) for x in parts[1:]]
    except ValueError:
        return False
    return True


def _read_text(f: IO[bytes], n: int, dim: int, path: Path) -> tuple[list[str], np.ndarray]:
    words, vectors = [], np.empty((n, dim), dtype=np.float32)
    for i in range(n):
        line_no = i + 2
        line = f.readline()
        if not line:
            raise DlError(f"{path} ends at line {line_no - 1}, but its header promises {n} vectors.")
        parts = line.decode("utf-8", errors="replace").rstrip().split(" ")
        if len(parts) != dim + 1:
            raise DlError(f"{path} line {line_no}: expected a word and {dim} numbers, got {len(parts)} fields.")
        try:
            vectors[i] = np.asarray(parts[1:], dtype=np.float32)
        except ValueError:
            raise DlError(f"{path} line {line_no}: not a number in the vector of {parts[0]!r}.") from None
        words.append(parts[0])
    return words, vectors


def _read_binary(f: IO[bytes], n: int, dim: int, path: Path) -> tuple[list[str], np.ndarray]:
    """Parse 1 MiB chunks: a word up to its space, then 4*dim bytes of little-endian floats.

    word2vec.c writes "\\n" after each vector and gensim does not; both files read the same,
    because the newline is stripped from the front of the next word.
    """
    words, vectors = [], np.empty((n, dim), dtype=np.float32)
    size = 4 * dim
    buf, pos = b"", 0
    for i in range(n):
        while True:
            space = buf.find(b" ", pos)
            if space >= 0 and len(buf) - space - 1 >= size:
                break
            more = f.read(1 << 20)
            if not more:
                raise DlError(f"{path} ends after {i} vectors, but its header promises {n}: the file is truncated.")
            buf, pos = buf[pos:] + more, 0
        word = buf[pos:space].decode("utf-8", errors="replace").lstrip("\n")
        vectors[i] = np.frombuffer(buf, dtype="<f4", count=dim, offset=space + 1)
        words.append(word)
        pos = space + 1 + size
    return words, vectors


SUBWORDS_FILE, NGRAMS_FILE = "subwords.json", "ngrams.npy"  # what a subword run writes beside its vectors


def vectors_for_run(run_dir: Path, limit: int | None = None) -> WordVectors:
    """A word2vec run's vectors: vectors.bin when there (reads faster), else vectors.txt; a subword run's
    (subwords.json beside them) as SubwordVectors, with ngrams.npy memory-mapped."""
    run_dir = Path(run_dir)
    for name in ("vectors.bin", "vectors.txt"):
        if (run_dir / name).is_file():
            wv = load_word2vec_format(run_dir / name, limit=limit)
            return _with_subwords(wv, run_dir) if (run_dir / SUBWORDS_FILE).is_file() else wv
    what = "has no vectors.bin or vectors.txt" if run_dir.is_dir() else "does not exist"
    raise DlError(f"Run folder {run_dir} {what}. Train word vectors with `dl train configs/word2vec.yaml`.")


def _with_subwords(wv: WordVectors, run_dir: Path) -> SubwordVectors:
    import json

    try:
        settings = json.loads((run_dir / SUBWORDS_FILE).read_text(encoding="utf-8"))
        min_n, max_n = int(settings["min_n"]), int(settings["max_n"])
        path = run_dir / str(settings.get("ngram_vectors", NGRAMS_FILE))
    except (OSError, ValueError, TypeError, KeyError) as e:  # not JSON, not a mapping, a key missing
        raise DlError(f"{run_dir / SUBWORDS_FILE} is not a subword run's settings ({e!r}); retrain the run.") from None
    if not path.is_file():
        raise DlError(
            f"{run_dir} is a subword run but {path.name} is missing: its out-of-vocabulary words have no vectors."
        )
    try:  # (buckets, D): 800 MB at fastText's 2M x 100, read as needed; never unpickled
        ngram_vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        return SubwordVectors(wv.words, wv.vectors, ngram_vectors, min_n, max_n, wv.counts)
    except ValueError as e:  # not an .npy file, or of another width than the vectors
        raise DlError(f"{path} is not this run's n-gram matrix: {e}") from None


def load_vectors(run: Path | None = None, file: Path | None = None) -> WordVectors:
    """The vectors the user named: exactly one of a run folder or a vectors file."""
    if (run is None) == (file is None):
        raise DlError("Give exactly one of --run RUN (a word2vec run folder) or --vectors FILE.")
    return vectors_for_run(run) if run is not None else load_word2vec_format(file)


# --------------------------------------------------------------------------- queries


def similar(wv: WordVectors, word: str, top: int = 10) -> list[tuple[str, float]]:
    """The `top` words of highest cosine similarity to `word`, best first (gensim's most_similar)."""
    row, unit = wv.query(word)
    return _best(wv.unit @ unit, top, exclude={row}, wv=wv)


def analogy(
    wv: WordVectors, a: str, b: str, c: str, top: int = 5, method: Method = "add", restrict: int | None = None
) -> list[tuple[str, float]]:
    """Words x nearest to a - b + c, excluding a, b and c: analogy(wv, "king", "man", "woman") -> queen.

    add: 3CosAdd (Mikolov et al. 2013), the cosine of x with unit(a) - unit(b) + unit(c), normalised.
    mul: 3CosMul (Levy & Goldberg 2014), cos'(x,a) cos'(x,c) / (cos'(x,b) + 1e-6) with cosines
         shifted to [0, 1], cos' = (cos + 1) / 2, as gensim's most_similar_cosmul.
    `restrict` searches only the first `restrict` (most frequent) words.
    """
    if method not in METHODS:
        raise DlError(f"Unknown analogy method {method!r}; choose one of: {', '.join(METHODS)}.")
    (ia, ua), (ib, ub), (ic, uc) = (wv.query(w) for w in (a, b, c))
    unit = wv.unit if restrict is None else wv.unit[:restrict]
    if method == "add":
        target = ua - ub + uc
        scores = unit @ (target / max(np.linalg.norm(target), np.finfo(np.float32).tiny))
    else:
        cos = (unit @ np.stack([ua, ub, uc]).T + 1) / 2  # (V, 3)
        scores = cos[:, 0] * cos[:, 2] / (cos[:, 1] + COSMUL_EPS)
    return _best(scores, top, exclude={ia, ib, ic}, wv=wv)


def _best(scores: np.ndarray, top: int, exclude: set[int | None], wv: WordVectors) -> list[tuple[str, float]]:
    """The `top` highest scores, rows in `exclude` left out (None: a query word without a row)."""
    exclude = exclude - {None}
    k = min(len(scores), top + len(exclude))
    if k <= 0:
        return []
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(wv.words[i], float(scores[i])) for i in best if i not in exclude][:top]


# --------------------------------------------------------------------------- evaluation


def evaluate_analogies(
    wv: WordVectors, questions_path: Path, restrict: int | None = 30_000, method: Method = "add"
) -> dict:
    """Accuracy on a questions-words file (plain or .gz); see evaluate_analogy_lines."""
    path = Path(questions_path)
    if not path.is_file():
        raise DlError(f"Questions file {path} does not exist (word2vec's questions-words.txt format).")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    result = evaluate_analogy_lines(wv, lines, restrict, method, source=str(path))
    if not result["sections"]:
        raise DlError(f"{path} holds no ': section' line and no questions.")
    return result


def evaluate_analogy_lines(
    wv: WordVectors, lines: list[str], restrict: int | None = 30_000, method: Method = "add", source: str = "questions"
) -> dict:
    """Accuracy on questions-words lines, as word2vec.c's compute-accuracy and gensim count it.

    A line `a b c d` reads "a is to b as c is to d" (`man king woman queen`); the answer is
    the word nearest to b - a + c among the first `restrict` words, excluding a, b, c.
    Questions with a word outside those are skipped; `total` counts the answered ones.
    Case-insensitive as gensim's case_insensitive=True: words compare uppercased, and a word
    with several case variants uses its first (most frequent) row.

    The questions of a section are answered together: one (Q, D) @ (D, R) product per chunk.
    """
    if method not in METHODS:
        raise DlError(f"Unknown analogy method {method!r}; choose one of: {', '.join(METHODS)}.")
    n = len(wv) if restrict is None else min(restrict, len(wv))
    folded = [w.upper() for w in wv.words[:n]]
    first: dict[str, int] = {}
    for i, w in enumerate(folded):
        first.setdefault(w, i)
    canon = np.array([first[w] for w in folded], dtype=np.int64)  # (R,) row -> first row of its case variants
    unit = wv.unit[:n]

    counts: dict[str, list[int]] = {}  # section -> [correct, total]; a repeated name adds up
    skipped = 0
    for name, questions in _parse_questions(lines, source):
        rows = [[first.get(w.upper(), -1) for w in q] for q in questions]
        known = np.array([r for r in rows if min(r) >= 0], dtype=np.int64).reshape(-1, 4)
        skipped += len(rows) - len(known)
        tally = counts.setdefault(name, [0, 0])
        for start in range(0, len(known), 512):  # (512, R) float32 scores at a time: 61 MB at R = 30,000
            tally[0] += int(_answer(unit, canon, known[start : start + 512], method).sum())
        tally[1] += len(known)
    sections = {name: _score(*tally) for name, tally in counts.items()}
    correct, total = (sum(t[k] for t in counts.values()) for k in (0, 1))
    return {**_score(correct, total), "skipped": skipped, "sections": sections}


def _answer(unit: np.ndarray, canon: np.ndarray, q: np.ndarray, method: Method) -> np.ndarray:
    """(Q,) True where the best word for b - a + c is d; q holds (Q, 4) rows of a, b, c, d."""
    a, b, c, d = q.T
    if method == "add":
        scores = (unit[b] - unit[a] + unit[c]) @ unit.T  # (Q, R); normalising the target keeps the order
    else:
        cos = lambda rows: (unit[rows] @ unit.T + 1) / 2  # noqa: E731  (Q, R) shifted to [0, 1]
        scores = cos(b) * cos(c) / (cos(a) + COSMUL_EPS)
    # Leave out a, b, c and any case variant of them (rows sharing their canonical row).
    asked = q[:, :3, None]  # (Q, 3, 1)
    variants = np.flatnonzero(canon != np.arange(len(canon)))
    scores[np.arange(len(q))[:, None], q[:, :3]] = -np.inf
    if len(variants):
        block = scores[:, variants]
        block[(canon[variants][None, None, :] == asked).any(axis=1)] = -np.inf
        scores[:, variants] = block
    return canon[scores.argmax(axis=1)] == d


def _score(correct: int, total: int) -> dict:
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total}


def _parse_questions(lines: list[str], source: str) -> list[tuple[str, list[list[str]]]]:
    """[(section name, [[a, b, c, d], ...]), ...] from `: name` header lines and 4-word lines."""
    sections: list[tuple[str, list[list[str]]]] = []
    for line_no, line in enumerate(lines, 1):
        if line.startswith(":"):
            sections.append((line.lstrip(": ").strip(), []))
        elif line.strip():
            words = line.split()
            if len(words) != 4:
                raise DlError(f"{source} line {line_no}: expected 4 words 'a b c d', got {len(words)}.")
            if not sections:
                raise DlError(f"{source} line {line_no}: a question before the first ': section' line.")
            sections[-1][1].append(words)
    return sections


# --------------------------------------------------------------------------- plots


def plot_analogy(wv: WordVectors, pairs: list[tuple[str, str]], path: Path, title: str | None = None) -> Path:
    """Arrows from each pair's first word to its second, in 2-D PCA of the words' unit vectors.

    plot_analogy(wv, [("man", "king"), ("woman", "queen")], "analogy.png"): parallel arrows of
    equal length are what a - b + c relies on. PCA is over the plotted words only, so their
    offsets get the two directions of most spread.
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend, nothing shown
    except ImportError:
        raise DlError("Plots need matplotlib: pip install matplotlib (or pip install 'dlcli[plot]').") from None
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    words = list(dict.fromkeys(w for pair in pairs for w in pair))
    points = dict(zip(words, _pca_2d(np.stack([wv.query(w)[1] for w in words]))))

    fig = Figure(figsize=(6, 5), layout="constrained")
    if fmt not in fig.canvas.get_supported_filetypes():
        raise DlError(f"Cannot save a plot as .{fmt}; use .png, .svg or .pdf.")
    ax = fig.add_subplot()
    for (start, end), color in zip(pairs, _colors()):
        ax.annotate(
            "", xy=points[end], xytext=points[start], arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5}
        )
    xy = np.array(list(points.values()))
    ax.scatter(xy[:, 0], xy[:, 1], color="black", s=12, zorder=3)
    for word, (x, y) in points.items():
        ax.annotate(word, (x, y), xytext=(4, 4), textcoords="offset points")
    pad = 0.15 * max(np.ptp(xy, axis=0).max(), 1e-6)
    ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
    ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or ", ".join(f"{a} → {b}" for a, b in pairs))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=120)
    return path


def _pca_2d(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 2): coordinates on the two leading principal axes (SVD of the centred rows)."""
    centred = (x - x.mean(axis=0)).astype(np.float64)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))  # fewer than 2 axes when N <= 2


def _colors():
    while True:
        yield from ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
