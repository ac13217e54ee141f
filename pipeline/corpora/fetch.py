"""HTTP download that resumes interrupted transfers and pins every file's sha256 in a lock file.

A transfer appends to `<name>.partial` and is renamed to `<name>` only when complete, so an
interrupted run (network drop, Ctrl-C, a killed job) continues from the bytes it already has.
The first complete fetch of a URL records its sha256 in a git-tracked JSON lock file; every
later fetch, on this or another machine, must produce the same bytes or fails naming the file.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from pipeline.atomic import write_text

CHUNK = 1 << 20
USER_AGENT = "v2s-pipeline (research download; resumes with HTTP Range)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(RuntimeError):
    """A transfer could not be completed (after its retries)."""


class ChecksumMismatch(RuntimeError):
    """A fetched file differs from the sha256 recorded in the lock file."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class ChecksumLock:
    """The lock file: `{url: {"sha256": ..., "size": ...}}`, written sorted so its bytes are stable."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.entries: dict[str, dict[str, object]] = {}
        if self.path.exists():
            self.entries = json.loads(self.path.read_text(encoding="utf-8") or "{}")

    def check_or_record(self, url: str, file: Path) -> str:
        """Return the file's sha256; record it if the URL is new, raise `ChecksumMismatch` if it differs."""
        actual = sha256_file(file)
        entry = self.entries.get(url)
        if entry is None:
            self.entries[url] = {"sha256": actual, "size": file.stat().st_size}
            self.save()
        elif entry["sha256"] != actual:
            raise ChecksumMismatch(
                f"sha256 mismatch for {file.name} ({url}): expected {entry['sha256']} (from {self.path}), "
                f"got {actual}. The file was kept at {file}; delete it to download again, or remove its "
                f"entry from {self.path} if the server's file changed on purpose."
            )
        return actual

    def save(self) -> None:
        """Write the lock file atomically."""
        write_text(self.path, json.dumps(self.entries, indent=2, sort_keys=True) + "\n")


def partial_path(dest: Path) -> Path:
    """Where the bytes of an unfinished transfer of `dest` accumulate."""
    return dest.with_name(dest.name + ".partial")


def fetch(
    url: str, dest: str | os.PathLike[str], lock: ChecksumLock, attempts: int = 5, timeout: float = 60.0, backoff: float = 2.0
) -> Path:
    """Download `url` to `dest` (resuming any `.partial`), then check or record its sha256 in `lock`.

    A dropped connection or server error is retried up to `attempts` times, each resuming where
    the last stopped, waiting `backoff`, 2*`backoff`, ... seconds (at most a minute) in between.
    """
    dest = Path(dest)
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(dest)
        errors: list[str] = []
        for attempt in range(max(1, attempts)):
            if attempt:
                time.sleep(min(backoff * 2 ** (attempt - 1), 60.0))
            try:
                if _transfer(url, partial, timeout):
                    break
                errors.append(f"connection closed after {partial.stat().st_size if partial.exists() else 0} bytes")
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, urllib.error.HTTPError) and exc.code < 500:
                    raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
                errors.append(f"{type(exc).__name__}: {exc}")
        else:
            have = partial.stat().st_size if partial.exists() else 0
            raise DownloadError(
                f"download of {url} did not complete after {attempts} attempt(s) ({'; '.join(errors[-2:])}); "
                f"{have} bytes kept in {partial}, the next run resumes from there"
            )
        os.replace(partial, dest)
    lock.check_or_record(url, dest)
    return dest


def _transfer(url: str, partial: Path, timeout: float) -> bool:
    """One request appending to `partial`; True when the file is complete, False if the stream ended short."""
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return _range_not_satisfiable(exc, partial, offset)
        raise
    with response:
        if response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range", ""), url)
            if start != offset:
                raise DownloadError(f"{url}: asked for bytes from {offset}, server sent from {start}")
        else:  # 200: the server ignored the range, so the whole file comes again
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        mode = "ab" if offset else "wb"
        name = partial.name.removesuffix(".partial")
        with open(partial, mode) as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=name, dynamic_ncols=True, disable=None
        ) as bar:
            clean = _copy(response.read, out.write, bar.update)
    size = partial.stat().st_size
    if total is not None and size > total:
        raise DownloadError(f"{url}: received {size} bytes, more than the {total} announced")
    return clean and (total is None or size == total)


def _copy(read: Callable[[int], bytes], write: Callable[[bytes], object], progress: Callable[[int], object]) -> bool:
    """Stream blocks to `write`; False if the connection broke (what arrived is kept for resuming)."""
    try:
        while block := read(CHUNK):
            write(block)
            progress(len(block))
    except http.client.IncompleteRead as exc:
        write(exc.partial)
        progress(len(exc.partial))
        return False
    except (TimeoutError, ConnectionError):
        return False
    return True


def _parse_content_range(value: str, url: str) -> tuple[int, int | None]:
    match = _CONTENT_RANGE.match(value.strip())
    if not match:
        raise DownloadError(f"{url}: partial response without a usable Content-Range ({value!r})")
    total = None if match[3] == "*" else int(match[3])
    return int(match[1]), total


def _range_not_satisfiable(exc: urllib.error.HTTPError, partial: Path, offset: int) -> bool:
    # 416 for `bytes=N-` means N >= size: complete if N == size, otherwise the local bytes are not this file.
    match = _UNSATISFIED_RANGE.match(exc.headers.get("Content-Range", "") or "")
    if match and int(match[1]) == offset:
        return True
    partial.unlink()
    return False
