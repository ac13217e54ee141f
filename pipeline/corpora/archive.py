"""Safe extraction of downloaded zip and tar archives.

Every member is checked before anything is written: absolute paths, `..` components, links
and device files are refused with an error naming the member, because a hostile or corrupt
archive must not write outside its folder. Regular files are then streamed into a temporary
sibling folder that replaces the destination only when extraction finishes.
"""
from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

from pipeline.atomic import atomic_dir


class UnsafeArchiveError(ValueError):
    """An archive member that could write outside the destination or is not a plain file."""


@dataclass(frozen=True)
class _Member:
    path: PurePosixPath  # already checked by `safe_member_path`
    is_dir: bool
    open: Callable[[], IO[bytes]]


def extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract a zip or tar (any compression) into `dest`, replacing it atomically; return `dest`."""
    archive, dest = Path(archive), Path(dest)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _write_all(_zip_members(archive, zf), dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            _write_all(_tar_members(archive, tf), dest)
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive")
    return dest


def safe_member_path(archive: Path, name: str) -> PurePosixPath:
    """The relative path a member may be written to; `UnsafeArchiveError` if it is absolute or climbs out."""
    normalized = name.replace("\\", "/")
    path = PurePosixPath(normalized)
    if path.is_absolute() or (len(normalized) > 1 and normalized[1] == ":"):
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} contains '..'")
    return PurePosixPath(*[p for p in path.parts if p not in ("", ".")])  # "./" itself becomes "."


def _member(archive: Path, name: str, is_dir: bool, opener: Callable[[], IO[bytes]]) -> _Member:
    path = safe_member_path(archive, name)
    if not is_dir and path == PurePosixPath("."):
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} is a file without a name")
    return _Member(path, is_dir, opener)


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in zf.infolist():
        mode = info.external_attr >> 16  # Unix mode, when the archive was made on Unix
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} is a symbolic link")
        if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} is not a regular file")
        members.append(_member(archive, info.filename, info.is_dir(), partial(zf.open, info)))
    return members


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in tf.getmembers():
        if info.issym() or info.islnk():
            raise UnsafeArchiveError(f"{archive.name}: member {info.name!r} is a link (to {info.linkname!r})")
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchiveError(f"{archive.name}: member {info.name!r} is a device, fifo or other special file")
        members.append(_member(archive, info.name, info.isdir(), partial(tf.extractfile, info)))  # type: ignore[arg-type]
    return members


def _write_all(members: list[_Member], dest: Path) -> None:
    with atomic_dir(dest) as tmp:
        for member in members:
            target = tmp / member.path
            if member.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with member.open() as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
