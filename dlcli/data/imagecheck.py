"""Image files read defensively: a bad file is a clear error or a counted skip, never a crash.

    data: {dataset: imagefolder, root: photos, on_bad_file: skip}    # or stop

What counts as bad: a file that Pillow cannot identify (a text file named .jpg), one that is
truncated or corrupt, and a decompression bomb, a small file that declares more pixels than
Pillow's limit (Image.MAX_IMAGE_PIXELS, about 89 megapixels), which would take gigabytes to
decode. An image folder is checked when it is loaded, before the first step:

    in memory   every image is decoded once anyway, so each failure is caught there
    streamed    each file's header is read and verified (cheap: a JPEG's pixels are not
                decoded); a file whose pixel data fails later, in a DataLoader worker, goes
                through ReadableImages, which never lets the worker die with a traceback
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps
from torch.utils.data import Dataset

from dlcli.console import warn
from dlcli.errors import DlError

SHOWN = 5  # bad files named in a skip warning


class UnreadableImage(DlError):
    """A file that is not a usable image; `reason` says why, the message also how to fix it."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} is not a readable image ({reason}). Give a complete JPEG/PNG/... image file.")


class BadImageFile(DlError):
    """An image that failed to decode in a DataLoader worker, with data.on_bad_file=stop.

    torch re-raises a worker's exception in the main process as the same type built from one
    string, "Caught BadImageFile in DataLoader worker 0. Original Traceback ...: <message>".
    Keeping the text after the last "BadImageFile: " shows the user the message, not the
    worker's traceback (in the main process, num_workers=0, the message is already plain).
    """

    def __init__(self, message: str):
        super().__init__(message.rsplit("BadImageFile: ", 1)[-1].strip())


def check_pixels(image: Image.Image, path: Path) -> None:
    """Refuse a declared size above Pillow's limit before any pixel is decoded.

    Image.open itself raises DecompressionBombError only above twice the limit (and merely
    warns between 1x and 2x); dl refuses everything above 1x, the size Pillow calls unsafe.
    """
    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit and width * height > limit:
        raise UnreadableImage(
            path,
            f"it declares {width} x {height} pixels, more than Pillow's limit of {limit} (Image.MAX_IMAGE_PIXELS): "
            "a decompression bomb, or an image too large to decode safely; resize it",
        )


def _reason(e: Exception) -> str:
    if isinstance(e, Image.DecompressionBombError):
        return f"a decompression bomb: {e}"
    return f"{type(e).__name__}: {str(e)[:200]}"


def read_image(path: Path) -> Image.Image:
    """An RGB PIL image, upright by its EXIF orientation, or an UnreadableImage (a DlError) naming the file.

    The one reader of image files (training data, `dl predict`, `dl stylize`): a phone photo stored
    sideways with an orientation tag is seen upright, as image viewers show it, wherever it is read.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            check_pixels(image, path)
            upright = ImageOps.exif_transpose(image)  # decodes every pixel: truncation shows here
            return upright.convert("RGB")
    except DlError:
        raise
    except Exception as e:  # the file is the only input, so whatever Pillow raises means it is bad
        raise UnreadableImage(path, _reason(e)) from None


def check_image(path: Path) -> str | None:
    """Why a file is not a usable image, from its header and structure (no pixel decoding); None if it looks fine.

    Image.verify checks a PNG's chunk checksums; for a JPEG it checks only the header, so a
    JPEG truncated in its pixel data passes here and fails when decoded (see ReadableImages).
    """
    try:
        with Image.open(path) as image:
            check_pixels(image, Path(path))
            image.verify()
    except UnreadableImage as e:
        return e.reason
    except Exception as e:  # as in read_image: any failure is the file's
        return _reason(e)
    return None


def handle_bad_files(bad: list[tuple[str, str]], total: int, on_bad_file: str, folder: Path) -> None:
    """Stop at the first bad file (on_bad_file=stop) or warn with their count (skip).

    bad: (path, reason) in the folder's file order, so the file named is always the same one.
    """
    if not bad:
        return
    if on_bad_file == "stop":
        path, reason = bad[0]
        raise DlError(
            f"{path} is not a readable image ({reason}); data.on_bad_file=stop stops at the first such file "
            f"({len(bad)} of {total} in {folder}). Remove or replace it, or set data.on_bad_file=skip to train without them."
        )
    if len(bad) == total:
        raise DlError(
            f"None of the {total} files in {folder} is a readable image: the first, {bad[0][0]}: {bad[0][1]}."
        )
    shown = "; ".join(f"{Path(p).name} ({reason})" for p, reason in bad[:SHOWN])
    more = f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    warn(
        f"skipped {len(bad)} of {total} files in {folder} that are not readable images (data.on_bad_file=skip): "
        f"{shown}{more}."
    )


def scan(samples: Sequence[tuple[str, int]], on_bad_file: str, folder: Path) -> list[tuple[str, int]]:
    """The (path, label) samples whose files pass check_image; the bad ones stop or are skipped."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # file I/O: threads overlap
        reasons = list(pool.map(check_image, [path for path, _ in samples], chunksize=256))
    handle_bad_files([(s[0], r) for s, r in zip(samples, reasons) if r], len(samples), on_bad_file, folder)
    return [s for s, r in zip(samples, reasons) if r is None]


class ReadableImages(Dataset):
    """(RGB PIL image, label) for each (path, label) sample, safe to decode in DataLoader workers.

    A file that passed the scan can still fail to decode (a JPEG cut short in its pixel data).
    on_bad_file=skip: the next readable sample stands in, chosen by position so that a resumed
    run sees the same batches, and a warning names the file once per process. stop: a
    BadImageFile, which ends the run with exit 2 and the file's name.
    """

    def __init__(self, samples: Sequence[tuple[str, int]], on_bad_file: str):
        self.samples = list(samples)
        self.on_bad_file = on_bad_file
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        n = len(self.samples)
        for offset in range(n):
            path, label = self.samples[(index + offset) % n]
            try:
                return read_image(Path(path)), label
            except UnreadableImage as e:
                if self.on_bad_file == "stop":
                    raise BadImageFile(
                        f"{e} Found while training (data.on_bad_file=stop): remove or replace it, "
                        "or set data.on_bad_file=skip to train without it."
                    ) from None
                if path not in self._warned:
                    self._warned.add(path)
                    warn(f"skipped {path}: {e.reason} (data.on_bad_file=skip; the next readable image stands in)")
        raise BadImageFile(
            f"None of the {n} images of this split can be decoded any more: were the files changed during training?"
        )
