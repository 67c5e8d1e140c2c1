"""vcam.download against a real HTTP server on 127.0.0.1 (Range support, cut-off switch, extra headers)."""

from __future__ import annotations

import hashlib
import io
import random
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from vcam.download import Fetched, RemoteFile, fetch, terminal_progress
from vcam.errors import VcamError

SIZE = 1_000_000


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it, recorded before the body is sent."""

    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class Served:
    """Behaviour switches of the test server and the requests it saw."""

    root: Path
    base: str = ""
    honour_range: bool = True
    cut_after: int | None = None  # send only this many body bytes, then close the connection
    file_headers: dict[str, str] = field(default_factory=dict)
    redirect_headers: dict[str, str] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)

    def url(self, name: str, redirect: bool = False) -> str:
        return f"{self.base}/{'redirect' if redirect else 'files'}/{name}"

    def publish(self, name: str, seed: int = 0) -> bytes:
        data = random.Random(seed).randbytes(SIZE)
        (self.root / name).write_bytes(data)
        return data


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        served = self.server.served
        if self.path.startswith("/redirect/"):
            self._reply(302, b"", {"Location": "/files/" + self.path.removeprefix("/redirect/"), **served.redirect_headers})
            return
        file = served.root / self.path.removeprefix("/files/")
        if not file.is_file():
            self._reply(404, b"not found", {})
            return
        data = file.read_bytes()
        requested = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(requested[1]) if requested and served.honour_range else None
        if start is not None and start >= len(data):
            self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        elif start is not None:
            content_range = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            self._reply(206, data[start:], {**content_range, **served.file_headers})
        else:
            self._reply(200, data, served.file_headers)

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        served = self.server.served
        sent = body if served.cut_after is None else body[: served.cut_after]
        served.requests.append(Seen(self.path, self.headers.get("Range"), status, len(sent)))
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(sent)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class _Server(ThreadingHTTPServer):
    def __init__(self, served: Served) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.served = served


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    served = Served(root=tmp_path / "served")
    served.root.mkdir()
    httpd = _Server(served)
    served.base = f"http://127.0.0.1:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_is_verified_and_renamed_into_place(server: Served, tmp_path: Path) -> None:
    data = server.publish("g.safetensors")
    calls: list[tuple[int, int | None]] = []
    remote = RemoteFile(server.url("g.safetensors"), "liveportrait/g.safetensors", sha256(data), SIZE)

    result = fetch(remote, tmp_path / "weights", progress=lambda done, total: calls.append((done, total)))

    final = tmp_path / "weights" / "liveportrait" / "g.safetensors"
    assert result == Fetched(final, sha256(data), resumed_from=0, downloaded=SIZE)
    assert final.read_bytes() == data
    assert not final.with_name("g.safetensors.part").exists()
    assert calls[0] == (0, SIZE) and calls[-1] == (SIZE, SIZE)
    assert [seen.range for seen in server.requests] == [None]


def test_interrupted_download_resumes_with_a_range_request(server: Served, tmp_path: Path) -> None:
    data = server.publish("g.bin")
    remote = RemoteFile(server.url("g.bin"), "g.bin", sha256(data))
    server.cut_after = 300_000

    with pytest.raises(VcamError, match=r"partial download is kept .* resumes it") as interrupted:
        fetch(remote, tmp_path)
    assert "\n" not in str(interrupted.value)
    assert (tmp_path / "g.bin.part").stat().st_size == 300_000
    assert not (tmp_path / "g.bin").exists()

    server.cut_after = None
    result = fetch(remote, tmp_path)

    assert server.requests[-1] == Seen("/files/g.bin", "bytes=300000-", 206, SIZE - 300_000)
    assert (result.resumed_from, result.downloaded) == (300_000, SIZE - 300_000)
    assert (tmp_path / "g.bin").read_bytes() == data


def test_checksum_mismatch_leaves_no_file_behind(server: Served, tmp_path: Path) -> None:
    server.publish("g.bin")

    with pytest.raises(VcamError, match="checksum mismatch .* run `vcam weights fetch` again"):
        fetch(RemoteFile(server.url("g.bin"), "g.bin", "0" * 64), tmp_path)

    assert list(tmp_path.iterdir()) == [server.root]


def test_server_ignoring_range_restarts_from_zero(server: Served, tmp_path: Path) -> None:
    data = server.publish("g.bin")
    (tmp_path / "g.bin.part").write_bytes(b"stale prefix" * 100)
    server.honour_range = False

    result = fetch(RemoteFile(server.url("g.bin"), "g.bin", sha256(data)), tmp_path)

    assert server.requests[-1] == Seen("/files/g.bin", "bytes=1200-", 200, SIZE)
    assert (result.resumed_from, result.downloaded) == (0, SIZE)
    assert (tmp_path / "g.bin").read_bytes() == data


def test_unsatisfiable_range_restarts_from_zero(server: Served, tmp_path: Path) -> None:
    data = server.publish("g.bin")
    (tmp_path / "g.bin.part").write_bytes(bytes(SIZE))  # as long as the file, but not its content

    result = fetch(RemoteFile(server.url("g.bin"), "g.bin", sha256(data)), tmp_path)

    assert [(seen.range, seen.status) for seen in server.requests] == [(f"bytes={SIZE}-", 416), (None, 200)]
    assert result.downloaded == SIZE
    assert (tmp_path / "g.bin").read_bytes() == data


def test_verified_existing_file_is_not_downloaded_again(server: Served, tmp_path: Path) -> None:
    data = server.publish("g.bin")
    remote = RemoteFile(server.url("g.bin"), "g.bin", sha256(data))
    fetch(remote, tmp_path)

    again = fetch(remote, tmp_path)

    assert len(server.requests) == 1
    assert again == Fetched(tmp_path / "g.bin", sha256(data), resumed_from=0, downloaded=0)


def test_existing_file_with_wrong_checksum_is_replaced(server: Served, tmp_path: Path) -> None:
    data = server.publish("g.bin")
    (tmp_path / "g.bin").write_bytes(b"an older version")

    result = fetch(RemoteFile(server.url("g.bin"), "g.bin", sha256(data)), tmp_path)

    assert result.downloaded == SIZE
    assert (tmp_path / "g.bin").read_bytes() == data


@pytest.mark.parametrize("via_redirect", [False, True], ids=["etag", "x-linked-etag-on-redirect"])
def test_server_advertised_sha256_is_checked(server: Served, tmp_path: Path, via_redirect: bool) -> None:
    data = server.publish("g.bin")
    other = server.publish("other.bin", seed=1)

    def advertise(digest: str) -> None:
        if via_redirect:  # like Hugging Face: the hash on the 302, a CDN ETag that is no sha256 on the file
            server.redirect_headers["X-Linked-ETag"] = f'"{digest}"'
            server.file_headers["ETag"] = '"5d41402abc4b2a76b9719d911017c592"'
        else:
            server.file_headers["ETag"] = f'W/"{digest}"'

    advertise(sha256(other))
    with pytest.raises(VcamError, match="checksum mismatch"):
        fetch(RemoteFile(server.url("g.bin", redirect=via_redirect), "g.bin"), tmp_path)
    assert not (tmp_path / "g.bin").exists()

    advertise(sha256(data))
    result = fetch(RemoteFile(server.url("g.bin", redirect=via_redirect), "g.bin"), tmp_path)
    assert result.sha256 == sha256(data)
    assert (tmp_path / "g.bin").read_bytes() == data


def test_without_any_checksum_the_computed_one_is_returned(server: Served, tmp_path: Path) -> None:
    data = server.publish("g.bin")

    result = fetch(RemoteFile(server.url("g.bin"), "g.bin"), tmp_path)

    assert result.sha256 == sha256(data)


def test_http_error_is_one_clear_line(server: Served, tmp_path: Path) -> None:
    with pytest.raises(VcamError, match=r"^download of g.bin failed \(HTTP 404 Not Found\); run `vcam weights fetch` again$"):
        fetch(RemoteFile(server.url("g.bin"), "g.bin"), tmp_path)


@pytest.mark.parametrize("path", ["../g.bin", "/etc/g.bin", ""])
def test_destination_must_stay_inside_the_folder(server: Served, tmp_path: Path, path: str) -> None:
    with pytest.raises(VcamError, match="must be relative"):
        fetch(RemoteFile(server.url("g.bin"), path), tmp_path / "weights")
    assert server.requests == []


def test_terminal_progress_draws_one_line_that_ends_when_done() -> None:
    out = io.StringIO()
    bar = terminal_progress("g.safetensors", out)

    bar(0, 2_000_000)
    bar(2_000_000, 2_000_000)

    drawn = out.getvalue().split("\r")[1:]
    assert len(drawn) == 2
    assert "  0%" in drawn[0] and "0.0/2.0 MB" in drawn[0]
    assert " 100%" in drawn[1] and "2.0/2.0 MB" in drawn[1] and "MB/s" in drawn[1]
    assert drawn[1].endswith("\n") and "\n" not in out.getvalue()[:-1]


def test_terminal_progress_without_total_ends_on_done_equals_total() -> None:
    out = io.StringIO()
    bar = terminal_progress("g.bin", out)

    bar(0, None)
    bar(3_000_000, 3_000_000)

    assert out.getvalue().endswith("\n") and "3.0/3.0 MB" in out.getvalue()
