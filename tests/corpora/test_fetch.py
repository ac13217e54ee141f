"""Resumable download and the checksum lock, against a local HTTP server with Range support."""
from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.corpora.fetch import ChecksumLock, ChecksumMismatch, DownloadError, fetch, partial_path

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every offset distinguishable


class RangeServer:
    """Serves `files`; the first request for a path in `cut_after` closes the connection after that many bytes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}
        self.honour_range = True
        self.log: list[tuple[str, str | None, int]] = []  # (path, Range header, body bytes sent)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server.handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        data = self.files.get(req.path)
        header = req.headers.get("Range")
        if data is None:
            self.log.append((req.path, header, 0))
            req.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", header)[1]) if header and self.honour_range else 0
        if start >= len(data) and header:
            req.send_response(416)
            req.send_header("Content-Range", f"bytes */{len(data)}")
            req.send_header("Content-Length", "0")
            self.log.append((req.path, header, 0))
            req.end_headers()
            return
        req.send_response(206 if start else 200)
        if start:
            req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        req.send_header("Content-Length", str(len(data) - start))
        req.end_headers()
        body = data[start:]
        cut = self.cut_after.pop(req.path, None)
        if cut is not None:
            body = body[: cut - start]
            req.close_connection = True
        self.log.append((req.path, header, len(body)))  # before the body: the client may finish first
        req.wfile.write(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = RangeServer()
    yield srv
    srv.close()


def test_interrupted_download_resumes_from_partial_on_next_run(server, tmp_path):
    server.files["/a.zip"] = PAYLOAD
    server.cut_after["/a.zip"] = 300_000
    dest = tmp_path / "dl" / "a.zip"
    lock = ChecksumLock(tmp_path / "lock.json")
    with pytest.raises(DownloadError, match="connection closed after 300000 bytes.*300000 bytes kept .* resumes"):
        fetch(f"{server.url}/a.zip", dest, lock, attempts=1)
    assert not dest.exists() and partial_path(dest).read_bytes() == PAYLOAD[:300_000]

    fetch(f"{server.url}/a.zip", dest, lock, attempts=1)
    assert dest.read_bytes() == PAYLOAD and not partial_path(dest).exists()
    # The second request asked only for the remainder, and only the remainder was sent.
    assert server.log[-1] == ("/a.zip", "bytes=300000-", len(PAYLOAD) - 300_000)
    saved = json.loads((tmp_path / "lock.json").read_text())
    assert saved == {f"{server.url}/a.zip": {"sha256": hashlib.sha256(PAYLOAD).hexdigest(), "size": len(PAYLOAD)}}


def test_connection_drop_is_retried_within_one_call(server, tmp_path):
    server.files["/b.tar"] = PAYLOAD
    server.cut_after["/b.tar"] = 123_457
    dest = fetch(f"{server.url}/b.tar", tmp_path / "b.tar", ChecksumLock(tmp_path / "lock.json"), backoff=0.0)
    assert dest.read_bytes() == PAYLOAD
    assert [entry[1] for entry in server.log] == [None, "bytes=123457-"]


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    server.files["/c.bin"] = PAYLOAD
    server.honour_range = False
    dest = tmp_path / "c.bin"
    partial_path(dest).write_bytes(b"stale bytes of something else")
    fetch(f"{server.url}/c.bin", dest, ChecksumLock(tmp_path / "lock.json"))
    assert dest.read_bytes() == PAYLOAD


def test_complete_partial_is_finished_without_a_body(server, tmp_path):
    server.files["/d.bin"] = PAYLOAD
    dest = tmp_path / "d.bin"
    partial_path(dest).write_bytes(PAYLOAD)  # interrupted just before the rename
    fetch(f"{server.url}/d.bin", dest, ChecksumLock(tmp_path / "lock.json"))
    assert dest.read_bytes() == PAYLOAD and server.log == [("/d.bin", f"bytes={len(PAYLOAD)}-", 0)]


def test_changed_file_on_server_fails_naming_file_and_hashes(server, tmp_path):
    lock = ChecksumLock(tmp_path / "lock.json")
    server.files["/s1.tar"] = PAYLOAD
    fetch(f"{server.url}/s1.tar", tmp_path / "first" / "s1.tar", lock)
    server.files["/s1.tar"] = PAYLOAD[::-1]
    expected, actual = hashlib.sha256(PAYLOAD).hexdigest(), hashlib.sha256(PAYLOAD[::-1]).hexdigest()
    fresh_lock = ChecksumLock(tmp_path / "lock.json")  # as a later run would read it
    with pytest.raises(ChecksumMismatch, match=f"s1.tar .*expected {expected}.*got {actual}"):
        fetch(f"{server.url}/s1.tar", tmp_path / "second" / "s1.tar", fresh_lock)


def test_existing_file_is_verified_not_downloaded_again(server, tmp_path):
    server.files["/e.bin"] = PAYLOAD
    lock = ChecksumLock(tmp_path / "lock.json")
    dest = fetch(f"{server.url}/e.bin", tmp_path / "e.bin", lock)
    fetch(f"{server.url}/e.bin", dest, lock)
    assert len(server.log) == 1
    dest.write_bytes(b"corrupted on disk")
    with pytest.raises(ChecksumMismatch, match="e.bin"):
        fetch(f"{server.url}/e.bin", dest, lock)


def test_missing_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{server.url}/nope.zip", tmp_path / "nope.zip", ChecksumLock(tmp_path / "lock.json"))

