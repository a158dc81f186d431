"""What may be written, replaced or deleted on disk: the single owner of that decision in vcq_hf.

Rules (house style 17): a file that replaces another is written under a temporary name in the same folder and renamed
over it when complete (`atomic_write_text`, `atomic_write_json`); a folder is only ever replaced or deleted when this
project wrote it, recognised by its marker file (`is_marked_folder`); a new folder is built beside the old one and
swapped in at the end (`replace_folder`); and two writers into one folder are kept apart by a lock
(`folder_lock`). Pure standard library, so the data builders can use it without importing torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..validation import CorruptWeightsError, explain_unreadable_weights, unreadable_safetensors


try:  # POSIX advisory locks; on other systems `folder_lock` falls back to an exclusive lock file.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


__all__ = [
    "CorruptWeightsError",
    "FolderLockedError",
    "explain_unreadable_weights",
    "atomic_write_json",
    "atomic_write_text",
    "folder_lock",
    "is_marked_folder",
    "replace_folder",
    "same_or_nested",
    "sibling_temp_folder",
    "unreadable_safetensors",
]


class FolderLockedError(BlockingIOError):
    """Another process holds the write lock of a folder."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and `os.replace` it into place, so a
    reader (or a crash) sees either the old file or the complete new one, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """`atomic_write_text` of `data` as indented JSON with a final newline."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def is_marked_folder(path: str | os.PathLike, marker: str) -> bool:
    """True if `path` is a folder holding the file `marker`: the sign that this project wrote it."""
    return (Path(path) / marker).is_file()


def same_or_nested(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if the two paths are the same folder or one lies inside the other (symlinks resolved)."""
    a, b = Path(a).resolve(), Path(b).resolve()
    return a == b or a in b.parents or b in a.parents


def sibling_temp_folder(path: str | os.PathLike, tag: str = "tmp") -> Path:
    """A new empty folder next to `path` (same file system, so it can be renamed onto it): `.<name>.<tag>-XXXX`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{tag}-", dir=path.parent))


def replace_folder(new: str | os.PathLike, target: str | os.PathLike, marker: str | None = None) -> Path:
    """Move the complete folder `new` to `target`. An existing `target` is first renamed aside and deleted only
    after the swap; when `marker` is given, an existing `target` without that marker file is refused
    (`FileExistsError`) and left untouched, since this project did not write it.

    Returns:
        `Path`: `target`.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        _fsync_dir(target.parent)
        return target
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder; move it away or choose another path.")
    if marker is not None and not is_marked_folder(target, marker):
        raise FileExistsError(
            f"{target} exists but was not written by vcq_hf (it has no {marker}); refusing to replace it. "
            "Choose another output folder or move it away."
        )
    old = sibling_temp_folder(target, "old")
    os.replace(target, old / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / target.name, target)  # put the previous result back
        shutil.rmtree(old, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)
    return target


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "another process") -> Iterator[Path]:
    """Hold an exclusive, non-blocking write lock on `folder` (created if missing) for the block.

    The lock is an advisory `flock` on the folder itself, so nothing is left behind and a killed holder releases it.
    A second holder gets `FolderLockedError` at once, naming the folder.

    Args:
        folder (`str` or `os.PathLike`): the folder to write into.
        what (`str`, *optional*): what the other writer is, for the error message.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows: an exclusive-create lock file
        lock_path = folder / ".vcq_hf.lock"
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError as err:
            raise FolderLockedError(f"{folder} is being written by {what} ({lock_path} exists).") from err
        try:
            yield folder
        finally:
            os.close(fd)
            os.unlink(lock_path)
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise FolderLockedError(
                f"{folder} is being written by {what} right now; wait for it to finish or choose another folder."
            ) from err
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the lock
