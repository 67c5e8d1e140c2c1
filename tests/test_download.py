"""vcam.download through huggingface_hub against a local server that answers like the Hub."""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_hub import FakeHub, running_hub
from huggingface_hub import constants, try_to_load_from_cache

from vcam.download import HubFile, _TerminalProgress, fetch, progress_bar_class, terminal_progress
from vcam.errors import VcamError

REPO = "KwaiVGI/LivePortrait"
PATH = "liveportrait/base_models/appearance_feature_extractor.pth"
SIZE = 300_000


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake Hub as HF_ENDPOINT, a private Hugging Face cache, online."""
    with running_hub() as served:
        monkeypatch.setenv("HF_ENDPOINT", served.endpoint)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield served


@pytest.fixture
def pinned(hub: FakeHub) -> tuple[HubFile, bytes]:
    data = random.Random(0).randbytes(SIZE)
    return hub.publish(REPO, PATH, data), data


def test_fresh_download_lands_in_the_hugging_face_cache(hub, pinned, tmp_path):
    file, data = pinned
    calls: list[tuple[int, int | None]] = []
    path = fetch(file, progress=lambda done, total: calls.append((done, total)))
    assert path.read_bytes() == data
    assert path.is_relative_to(tmp_path / "hf-cache" / "models--KwaiVGI--LivePortrait" / "snapshots")
    assert calls[-1] == (SIZE, SIZE) and len(calls) > 1
    assert len(hub.gets()) == 1


def test_cached_file_is_used_without_the_network(hub, pinned, monkeypatch):
    file, data = pinned
    first = fetch(file)
    hub.requests.clear()
    assert fetch(file) == first
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch(file).read_bytes() == data
    assert hub.file_requests() == []


def test_cut_download_resumes_with_a_range_request(hub):
    # huggingface_hub writes in chunks of DOWNLOAD_CHUNK_SIZE and resumes after the last whole chunk
    chunk = constants.DOWNLOAD_CHUNK_SIZE
    data = random.Random(1).randbytes(chunk + 1_000_000)
    file = hub.publish(REPO, PATH, data)
    hub.cut_first_get_after = chunk + 500_000
    assert fetch(file).read_bytes() == data
    gets = hub.gets()
    assert gets[0].range is None and gets[-1].range == f"bytes={chunk}-"


def test_wrong_bytes_are_rejected_in_one_line_and_leave_no_file(hub, pinned, tmp_path):
    file, data = pinned
    hub.served_instead[PATH] = bytes(reversed(data))
    with pytest.raises(VcamError) as error:
        fetch(file)
    message = str(error.value)
    assert "does not match its pinned sha256" in message and "vcam weights fetch" in message and "\n" not in message
    cached = try_to_load_from_cache(REPO, PATH, cache_dir=tmp_path / "hf-cache")
    assert not isinstance(cached, str) or not Path(cached).exists()
    hub.served_instead.clear()
    assert fetch(file).read_bytes() == data  # the next try downloads the right file


def test_changed_upstream_file_is_reported_before_downloading(hub, pinned):
    file, _ = pinned
    hub.advertised[PATH] = "ab" * 32
    with pytest.raises(VcamError, match=r"now serves a different .* upstream weights changed, nothing was downloaded"):
        fetch(file)
    assert hub.gets() == []


def test_offline_without_cache_is_one_line(hub, pinned, monkeypatch):
    file, _ = pinned
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VcamError, match=r"^.*not in the Hugging Face cache and HF_HUB_OFFLINE is set: unset HF_HUB_OFFLINE .* demo model$"):
        fetch(file)
    assert hub.file_requests() == []


def test_unreachable_hub_is_one_line(hub, pinned, monkeypatch):
    file, _ = pinned
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(VcamError) as error:
        fetch(file)
    assert str(error.value).startswith(f"cannot download {PATH} from http://127.0.0.1:9")
    assert "\n" not in str(error.value)


def test_missing_file_on_the_hub_is_one_line(hub):
    absent = HubFile(REPO, "liveportrait/nothing.pth", 10, "00" * 32)
    with pytest.raises(VcamError, match=r"^cannot download liveportrait/nothing.pth"):
        fetch(absent)


def test_progress_reaches_the_report_through_huggingface_hubs_xet_reporter():
    """Xet transfers (used when hf_xet is installed and the repository stores files in Xet) drive the
    progress class through another reporter: one bar, counting file bytes, not network bytes."""
    from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

    calls: list[tuple[int, int | None]] = []
    cls = progress_bar_class(lambda done, total: calls.append((done, total)))
    with XetDownloadProgressReporter(reconstruction_desc="f", total=1000, log_level=logging.INFO, tqdm_class=cls) as reporter:
        for done in (400, 1000):
            reporter.update_progress(SimpleNamespace(
                total_bytes_completed=done, total_transfer_bytes_completed=done // 3, total_bytes=1000,
                total_bytes_completion_rate=1e6, total_transfer_bytes_completion_rate=3e5,
            ))
    assert calls == [(0, 1000), (400, 1000), (1000, 1000)]


def test_terminal_progress_draws_one_line_with_time_left_that_ends_when_done() -> None:
    stream = io.StringIO()
    progress = _TerminalProgress("model.pth", stream, redraw_every=0.0)
    progress(0, 4_000_000)
    progress(2_000_000, 4_000_000)
    progress(4_000_000, 4_000_000)
    progress(4_000_000, 4_000_000)
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert "[########################] 100%" in text and "4.0/4.0 MB" in text
    assert "s left" in text.split("\r")[2]


def test_terminal_progress_without_total_ends_on_done_equals_total() -> None:
    stream = io.StringIO()
    progress = terminal_progress("f", stream)
    progress(1_500_000, None)
    progress(1_500_000, 1_500_000)
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1 and "1.5/1.5 MB" in text
