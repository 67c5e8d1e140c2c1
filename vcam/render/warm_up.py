"""Getting the GPU ready in the background while the app starts.

A process's first CUDA work creates the context, and its first convolutions and matrix products
load cuDNN's and cuBLAS's kernel libraries and create their handles: most of a second on an H100
host, none of which needs the model. A thread does it while the weights load, so the renderer that
comes next finds it done. Torch keeps a thread's library handles for the next thread that asks.
"""

from __future__ import annotations

import logging
import threading

import torch
import torch.nn.functional as F

log = logging.getLogger("vcam.render")


def _first_cuda_work() -> None:
    if not torch.cuda.is_available():
        return
    device = torch.device("cuda", torch.cuda.current_device())
    with torch.no_grad():
        for dtype in (torch.float16, torch.float32):  # the networks' convolutions, then the keypoint math
            image = torch.zeros(1, 8, 8, 8, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            F.conv2d(image, torch.zeros(8, 8, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last), padding=1)
            volume = torch.zeros(1, 8, 4, 8, 8, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last_3d)
            F.conv3d(volume, torch.zeros(8, 8, 3, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last_3d), padding=1)
            matrix = torch.zeros(16, 16, device=device, dtype=dtype)
            F.linear(matrix, matrix, matrix[0])
            torch.bmm(matrix[None], matrix[None])
    torch.cuda.synchronize(device)


def warm_up_cuda() -> threading.Thread:
    """Start the first CUDA work on a thread of its own (nothing happens without a CUDA device)."""

    def run() -> None:
        try:
            _first_cuda_work()
        except Exception as exc:  # the renderer meets the same problem and reports it properly
            log.debug("warming up CUDA failed: %s", exc)

    thread = threading.Thread(target=run, name="vcam-cuda-warm-up", daemon=True)
    thread.start()
    return thread
