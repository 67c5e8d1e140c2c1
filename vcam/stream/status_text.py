"""A call's link in words: the same line in ``vcam send`` / ``vcam receive`` and in the tray."""

from __future__ import annotations

from .transport import LinkState, LinkStatus


def _host(peer: str) -> str:
    """``192.168.1.5`` of ``192.168.1.5:50123``."""
    return peer.rpartition(":")[0] or peer


def _traffic(status: LinkStatus) -> str:
    rejected = f" · {status.rejected} rejected" if status.rejected else ""
    return f"{status.kbit_s:.1f} kbit/s · loss {100 * status.loss:.1f} %{rejected}"


def receiving_text(status: LinkStatus, port: int, code: str) -> str:
    """"Receiving from 192.168.1.5 · 12.3 kbit/s · loss 0.4 %", or waiting on ``port`` for the sender paired by ``code``."""
    if status.state is LinkState.CONNECTED:
        return f"Receiving from {_host(status.peer)} · {_traffic(status)}"
    if status.state is LinkState.SILENT:
        return f"Lost the sender {_host(status.peer)} · waiting on port {port}"
    return f"Waiting for the sender on port {port} · code {code}"


def sending_text(status: LinkStatus) -> str:
    """"Sending to 192.168.1.20:47470 · 12.3 kbit/s · loss 0.4 %", or calling it."""
    if status.state is LinkState.CONNECTED:
        return f"Sending to {status.peer} · {_traffic(status)}"
    if status.state is LinkState.SILENT:
        return f"No answer from {status.peer} · calling again"
    return f"Calling {status.peer}"
