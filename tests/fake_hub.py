"""A local HTTP server that answers like the Hugging Face Hub for Git LFS files.

``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` answer 302 with the headers ``hf_hub_download``
reads (``X-Repo-Commit``, ``X-Linked-Etag`` = the file's sha256, ``X-Linked-Size``, ``Location``);
the location names the same server by another host name (``localhost`` against ``127.0.0.1``) the
way the Hub points at its CDN, so the client treats it as the CDN: it does not forward the Hub's
headers there and downloads from it with ``Range`` requests when it resumes.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vcam.download import HubFile

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    """Files by (repo, path), behaviour switches, and the requests seen."""

    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    advertised: dict[str, str] = field(default_factory=dict)  # path -> sha256 to advertise instead of the real one
    served_instead: dict[str, bytes] = field(default_factory=dict)  # path -> bytes the CDN sends instead
    cut_first_get_after: int | None = None  # the first CDN GET sends only this many body bytes, then closes
    requests: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, repo: str, path: str, data: bytes) -> HubFile:
        """Serve ``data`` and return its entry with the pinned size and sha256."""
        self.files[(repo, path)] = data
        return HubFile(repo, path, len(data), hashlib.sha256(data).hexdigest())

    def file_requests(self) -> list[Seen]:
        """Requests for files (the client also asks the Hub's API for things of its own)."""
        return [seen for seen in self.requests if "/resolve/" in seen.path or seen.path.startswith("/cdn/")]

    def gets(self) -> list[Seen]:
        """The downloads: GET requests to the CDN."""
        return [seen for seen in self.requests if seen.method == "GET" and seen.path.startswith("/cdn/")]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        hub = self.server.hub
        hub.requests.append(Seen(self.command, self.path, self.headers.get("Range")))
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path)
        cdn = re.fullmatch(r"/cdn/([^/]+/[^/]+)/(.+)", self.path)
        if resolve and (resolve[1], resolve[3]) in hub.files:
            repo, path = resolve[1], resolve[3]
            data = hub.files[(repo, path)]
            self._send(302, b"", {
                "Location": f"http://localhost:{hub.port}/cdn/{repo}/{path}",
                "X-Repo-Commit": COMMIT,
                "X-Linked-Etag": f'"{hub.advertised.get(path, hashlib.sha256(data).hexdigest())}"',
                "X-Linked-Size": str(len(data)),
                "ETag": '"w-git-blob-id"',
            }, body)
        elif cdn and (cdn[1], cdn[2]) in hub.files:
            data = hub.served_instead.get(cdn[2], hub.files[(cdn[1], cdn[2])])
            self._send_range(data, body)
        else:
            self._send(404, b"not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, body)

    def _send_range(self, data: bytes, body: bool) -> None:
        requested = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(requested[1]) if requested else 0
        headers = {"Accept-Ranges": "bytes"}
        if requested:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        payload = data[start:]
        cut = self.server.hub.cut_first_get_after
        if body and cut is not None:
            self.server.hub.cut_first_get_after = None
            self._send(206 if requested else 200, payload, headers, body, cut_after=cut)
            return
        self._send(206 if requested else 200, payload, headers, body)

    def _send(self, status: int, payload: bytes, headers: dict[str, str], body: bool, cut_after: int | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(payload)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload if cut_after is None else payload[:cut_after])
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: FakeHub) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub


@contextmanager
def running_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    httpd = _Server(hub)
    hub.port = httpd.server_port
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
