"""An image folder given as one archive (.tar, .tar.gz, .tgz, .zip), unpacked once into a cache folder.

    data: {dataset: imagefolder, root: ../shared/datasets/cifar10/cifar10-jpeg.tar.gz}

The archive is unpacked into `${XDG_CACHE_HOME:-~/.cache}/dlcli/archives/<sha256 of its bytes>/tree/`
and that folder is then read exactly as a folder given in data.root is (images._image_folder): the
same class folders, bad-file checks, in-memory decoding or streaming through DataLoader workers.
Unpacking, rather than decoding members straight from the archive, keeps one code path for both,
and lets a tree too large for memory stream (workers cannot seek into a .tar.gz). meta.json, written
once the tree is whole, records the archive's sha256; a later run with the same bytes (wherever the
archive lies) reuses the tree, and a changed archive gets a folder of its own.

Nothing is written until every member has been checked: absolute names, `..` components, links that
lead out of the tree and device files or FIFOs are refused (exit 2). tarfile's "data" filter
(PEP 706) then guards the extraction itself. A truncated or corrupt archive is exit 2 naming it.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from dlcli.data.download import sha256_file
from dlcli.errors import DlError
from dlcli.files import remove_stale_temps, temp_path, write_json_atomic

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
ARCHIVE_SUFFIXES = (*TAR_SUFFIXES, ".zip")
_CHUNK = 1 << 20
META = "meta.json"  # written last: its presence means the tree is whole
# errors that are the cache folder's (full, read-only), not the archive's
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def is_archive(path: Path) -> bool:
    return Path(path).is_file() and Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def cache_root() -> Path:
    """Where archives are unpacked: $XDG_CACHE_HOME/dlcli/archives (~/.cache/dlcli/archives by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlcli" / "archives"


def unpacked_tree(archive: Path) -> Path:
    """The image folder inside `archive`, unpacked the first time: its top, or the one folder at its top."""
    archive = Path(archive)
    try:
        digest = sha256_file(archive)  # the cache's key: the same bytes anywhere share one tree
    except OSError as e:
        raise DlError(f"Cannot read the archive {archive} ({e}). Check data.root.") from None
    folder = cache_root() / digest[:16]
    if not _whole(folder, digest):
        _unpack(archive, digest, folder)
    tree = folder / "tree"
    # hidden entries and macOS's __MACOSX/ (resource forks) are not the tree's
    entries = [e for e in tree.iterdir() if not e.name.startswith((".", "__MACOSX"))]
    if not (tree / "train").is_dir() and len(entries) == 1 and entries[0].is_dir():
        return entries[0]  # cifar10/train/..., as most archives are made (tar -czf x.tar.gz cifar10)
    return tree


def _whole(folder: Path, digest: str) -> bool:
    try:
        return json.loads((folder / META).read_text(encoding="utf-8")).get("sha256") == digest
    except (OSError, ValueError):
        return False


def _unpack(archive: Path, digest: str, folder: Path) -> None:
    """Check every member, then extract into a temp folder renamed to `folder` when whole."""
    members, total_bytes = _checked_members(archive)  # reads only
    root = folder.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DlError(f"Cannot make the cache folder {root} to unpack {archive} into ({e}). {_cache_hint()}") from None
    remove_stale_temps(root)  # half-unpacked trees of processes that died (SIGKILL, power loss)
    free = shutil.disk_usage(root).free
    if total_bytes > free:
        raise DlError(
            f"{archive} unpacks to {total_bytes / 1024**3:.2f} GiB, more than the {free / 1024**3:.2f} GiB "
            f"free in {root}. {_cache_hint()}"
        )
    tmp = temp_path(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _extract(archive, members, tmp / "tree")
        write_json_atomic(tmp / META, {"archive": str(archive.resolve()), "sha256": digest, "bytes": total_bytes})
        if folder.exists() and not _whole(folder, digest):  # another archive's, with the same sha256 prefix
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _whole(folder, digest):  # else another process (a DDP rank) unpacked the same archive first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cache_hint() -> str:
    return "Set XDG_CACHE_HOME to a folder on a disk with room (archives unpack into $XDG_CACHE_HOME/dlcli/archives)."


# --------------------------------------------------------------------------- members


def _checked_members(archive: Path) -> tuple[list, int]:
    """The archive's members (TarInfo or ZipInfo) and their bytes, each checked; a DlError for the first unsafe one."""
    try:
        if archive.name.lower().endswith(TAR_SUFFIXES):
            with tarfile.open(archive, "r:*", tarinfo=_StrictTarInfo) as tar:
                members = tar.getmembers()  # reads every header: a truncated or garbled one fails here
                while tar.fileobj.read(_CHUNK):  # and to the end, where gzip checks its CRC-32 and length
                    pass
            problems = ((m.name, _tar_problem(m)) for m in members)
            total = sum(m.size for m in members if m.isreg())
        else:
            with zipfile.ZipFile(archive) as z:
                members = z.infolist()
            problems = ((m.filename, _zip_problem(m)) for m in members)
            total = sum(m.file_size for m in members if not m.is_dir())
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise _corrupt(archive, e) from None
    for name, problem in problems:
        if problem:
            raise DlError(
                f"{archive}: the member {name!r} {problem}. Refused; nothing was unpacked. An image folder's "
                "archive holds only folders and files under relative paths (links, if any, inside it)."
            )
    return members, total


class _StrictTarInfo(tarfile.TarInfo):
    """A member header that must be whole. tarfile ends the member list quietly at a header cut
    short, missing or garbled (a .tar cut at or inside a header reads as a shorter archive); here
    those are errors, and only the zero block that ends every tar ends the list."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            raise
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as e:
            raise tarfile.ReadError(f"no valid member header at byte {tar.offset} ({e})") from None


def _name_problem(name: str) -> str | None:
    path = PurePosixPath(name)
    if path.is_absolute():
        return "has an absolute path, which would be written outside the archive's folder"
    if ".." in path.parts:
        return "has a '..' component, which would be written outside the archive's folder"
    return None


def _escapes(target: str) -> bool:
    """Whether a link target (relative to the tree's top) leads out of the tree."""
    normal = posixpath.normpath(target)
    return posixpath.isabs(target) or normal == ".." or normal.startswith("../")


def _tar_problem(member: tarfile.TarInfo) -> str | None:
    if problem := _name_problem(member.name):
        return problem
    if member.issym() and _escapes(posixpath.join(posixpath.dirname(member.name), member.linkname)):
        return f"is a symlink to {member.linkname}, outside the archive's folder"
    if member.islnk() and _escapes(member.linkname):  # a hard link names another member, from the top
        return f"is a hard link to {member.linkname}, outside the archive's folder"
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device file or a FIFO, not a file"
    return None


def _zip_problem(member: zipfile.ZipInfo) -> str | None:
    if problem := _name_problem(member.filename):
        return problem
    mode = member.external_attr >> 16  # the Unix mode, when a Unix zip wrote the member
    if stat.S_ISLNK(mode):  # zipfile would write the link's target as the file's text
        return "is a symlink, which zipfile cannot unpack as one"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        return "is a device file or a FIFO, not a file"
    return None


# --------------------------------------------------------------------------- extraction


def _extract(archive: Path, members: list, dest: Path) -> None:
    dest.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(TAR_SUFFIXES):
            with tarfile.open(archive, "r:*", tarinfo=_StrictTarInfo) as tar:
                tar.extractall(dest, members=members, filter="data")  # PEP 706: refuses what escapes dest
        else:
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest, members=members)  # checks each member's CRC-32
    except tarfile.FilterError as e:  # what _tar_problem let through, e.g. a path through a link
        raise DlError(f"{archive}: {e}. Refused; what was unpacked so far is removed.") from None
    except OSError as e:
        if e.errno in _WRITE_ERRNOS:
            raise DlError(f"Cannot unpack {archive} into {dest} ({e}). {_cache_hint()}") from None
        raise _corrupt(archive, e) from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, RuntimeError, NotImplementedError) as e:
        raise _corrupt(archive, e) from None  # RuntimeError: an encrypted zip; NotImplementedError: its compression


def _corrupt(archive: Path, e: BaseException) -> DlError:
    return DlError(
        f"Cannot read the archive {archive} ({type(e).__name__}: {str(e)[:200]}): it is truncated, corrupt or not "
        "a .tar/.tar.gz/.tgz/.zip file. Copy or download it again."
    )
