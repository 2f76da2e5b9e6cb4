"""Downloads behind a cache: URLs, sha256 checks, the torch hub folder, offline errors.

Everything that may touch the network goes through `fetch`, so that there is a
single place that honours DL_OFFLINE and a single shape of error when a file
is missing: the user is told which URL to download and the full path to save
it as, which is all they need on a machine without internet.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import IO, Any

import torch

from dlcli.checkpoint import is_state_dict
from dlcli.errors import DlError

_OFFLINE_ENV = "DL_OFFLINE"
_TRUE_VALUES = {"1", "true", "yes"}
_TIMEOUT_S = 30.0
_CHUNK = 1 << 20  # 1 MiB: large enough to be fast, small enough for a smooth progress bar
# torchvision names its weight files <name>-<first hex digits of sha256>.pth
# (the same convention torch.hub.load_state_dict_from_url(check_hash=True) relies on).
_NAME_HASH = re.compile(r"-([0-9a-f]{8,})\.[^.]+$")


# --- generic helpers ---------------------------------------------------------


def offline() -> bool:
    """True when env DL_OFFLINE is 1/true/yes; then no network access is attempted."""
    return os.environ.get(_OFFLINE_ENV, "").strip().lower() in _TRUE_VALUES


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in chunks so large weight files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_matches(actual: str, expected: str) -> bool:
    """Full sha256 or a prefix of it (torchvision publishes only the first hex digits)."""
    return actual.lower().startswith(expected.lower())


def _check_expected(sha256: str | None) -> None:
    # An empty or non-hex "prefix" would match everything (or nothing): that is a
    # bug in the caller, not something the user can fix, hence ValueError.
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{8,64}", sha256):
        raise ValueError(f"sha256 must be 8 to 64 hex digits, got {sha256!r}")


# --- fetch -------------------------------------------------------------------


def fetch(url: str, dest: Path, sha256: str | None = None, *, what: str) -> Path:
    """Return `dest`, downloading `url` there first if it is not there yet.

    An existing file is trusted unless `sha256` is given, in which case it must
    match (a full digest or a prefix of one). A download goes to a temporary file
    in the same folder and is moved into place with os.replace only after it is
    complete, fsynced and verified, so an interrupted or bad download never leaves
    a half-written `dest` that a later run would take for the real file.
    """
    _check_expected(sha256)
    dest = Path(dest)
    if dest.exists():
        _verify_existing(dest, sha256, what)
        return dest
    if offline():
        raise _missing_error(what, url, dest, f"offline: {_OFFLINE_ENV} is set")
    try:
        _download(url, dest, sha256)
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
        # URLError/HTTPError: unreachable host or 404; TimeoutError: no answer within
        # the timeout; OSError: connection reset or a read-only/full disk; ValueError:
        # urllib's "unknown url type" for a malformed URL from a config.
        raise _missing_error(what, url, dest, f"download failed: {_reason(e)}") from e
    return dest


def _verify_existing(dest: Path, sha256: str | None, what: str) -> None:
    if sha256 is None:
        return
    actual = sha256_file(dest)
    if not _hash_matches(actual, sha256):
        raise DlError(
            f"{what}: the file {dest} is corrupt or not the expected one "
            f"(sha256 {actual}, expected {sha256}{'...' if len(sha256) < 64 else ''}). "
            f"Delete it so that it is downloaded again, or replace it with the right file."
        )


def _missing_error(what: str, url: str, dest: Path, reason: str) -> DlError:
    return DlError(
        f"{what} is not in the cache and cannot be downloaded ({reason}): "
        f"download {url} and save it as {dest.resolve()}"
    )


def _reason(e: BaseException) -> str:
    # URLError wraps the real cause in .reason; its str() adds a noisy "<urlopen error ...>".
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _download(url: str, dest: Path, sha256: str | None) -> None:
    """Download to a temp file next to `dest`, verify, then atomically rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as dest: os.replace is only atomic within one filesystem. open(), not mkstemp:
    # the cached file gets the umask's mode (0644 under umask 022), not mkstemp's 0600.
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as out:
            actual = _copy_url(url, out)
            out.flush()
            os.fsync(out.fileno())  # the data is on disk before the name points at it
        if sha256 is not None and not _hash_matches(actual, sha256):
            raise DlError(
                f"the file downloaded from {url} has sha256 {actual}, expected {sha256}"
                f"{'...' if len(sha256) < 64 else ''}: the server or a proxy returned a "
                f"different file. Try again later, or download it by hand and save it as "
                f"{dest.resolve()}"
            )
        os.replace(tmp, dest)
    finally:
        # On any failure (including Ctrl-C) the partial file goes, and dest stays absent.
        tmp.unlink(missing_ok=True)


def _copy_url(url: str, out: IO[bytes]) -> str:
    """Stream `url` into `out`; return the sha256 of what was written."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
        total = _content_length(response)
        with _progress(total, Path(urllib.parse.urlparse(url).path).name) as bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _content_length(response: Any) -> int | None:
    value = response.headers.get("Content-Length") if response.headers else None
    return int(value) if value and value.isdigit() else None


class _NoProgress:
    """Stands in for a tqdm bar when there is no terminal to draw on (logs, CI)."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        pass


def _progress(total: int | None, name: str) -> Any:
    # A bar in a log file is just noise (one line per refresh), so only on a TTY;
    # tqdm is imported lazily so it stays optional when nothing is downloaded.
    if not sys.stderr.isatty():
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoProgress()
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr)


# --- torchvision weights -----------------------------------------------------


def torchvision_weights(arch: str) -> Any:
    """torchvision's DEFAULT WeightsEnum member for a classification architecture name."""
    import torchvision.models  # lazy: importing torchvision costs about a second

    choices = torchvision.models.list_models(module=torchvision.models)
    if arch not in choices:
        raise DlError(
            f"unknown torchvision classification architecture {arch!r}: choose one of {', '.join(sorted(choices))}"
        )
    try:
        enum = torchvision.models.get_model_weights(arch)
        return enum.DEFAULT
    except (ValueError, AttributeError, KeyError) as e:
        raise DlError(
            f"torchvision has no pretrained weights for {arch!r}: choose one of "
            f"{', '.join(sorted(choices))}, or train it from scratch"
        ) from e


def hub_weights_path(weights: Any) -> Path:
    """Where torch hub caches that weights file (follows TORCH_HOME, like torch.hub does)."""
    # Same rule as torch.hub.load_state_dict_from_url, so files downloaded by plain
    # torchvision (weights=...) are found here and the other way round.
    name = os.path.basename(urllib.parse.urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _name_hash_prefix(path: Path) -> str | None:
    match = _NAME_HASH.search(path.name)
    return match.group(1) if match else None


def load_torchvision_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet (DEFAULT) weights for `arch`, from the torch hub cache.

    Downloaded (and checked against the hash prefix in the file name) when missing
    and online. A file already in the cache with another hash is loaded with a
    warning rather than refused: users place files by hand, and what matters is
    that it is a readable state_dict, which is checked next.
    """
    weights = torchvision_weights(arch)
    path = hub_weights_path(weights)
    prefix = _name_hash_prefix(path)
    if path.exists():
        _warn_if_hash_differs(path, prefix)
    else:
        fetch(weights.url, path, sha256=prefix, what=str(weights))
    return _load_state_dict(path, what=str(weights))


def _warn_if_hash_differs(path: Path, prefix: str | None) -> None:
    if prefix is None:
        return
    actual = sha256_file(path)
    if not _hash_matches(actual, prefix):
        warnings.warn(
            f"{path}: sha256 {actual[: len(prefix)]}... differs from torchvision's published "
            f"file ({prefix}...); loading it anyway because it is in the cache, and it is "
            f"used only if it is a readable state_dict",
            stacklevel=3,
        )


def _load_state_dict(path: Path, *, what: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch.load reports a truncated or foreign file with many exception types
        # (RuntimeError, UnpicklingError, EOFError, ...); the file is the only input,
        # so every one of them means "this file is bad".
        raise DlError(
            f"{what}: cannot read {path} as a PyTorch weights file ({type(e).__name__}: {e}). "
            f"Delete it so that it is downloaded again, or replace it with the right file."
        ) from e
    if not is_state_dict(obj):
        raise DlError(
            f"{what}: {path} is not a state_dict (a dict of parameter names to tensors) but "
            f"a {type(obj).__name__}. Delete it or replace it with torchvision's weights file."
        )
    return dict(obj)
