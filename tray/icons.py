"""The tray icon: a camera glyph with a status dot whose colour and mark tell the pipeline state
(the mark keeps states apart for colour-blind users)."""

from __future__ import annotations

from functools import cache

from PIL import Image, ImageDraw

from vcam.pipeline import PipelineState

SIZE = 64

DOT_COLOURS: dict[PipelineState, tuple[int, int, int]] = {
    PipelineState.STARTING: (66, 133, 244),
    PipelineState.RUNNING: (52, 168, 83),
    PipelineState.PAUSED: (251, 188, 5),
    PipelineState.FACE_LOST: (255, 109, 0),
    PipelineState.WAITING: (142, 68, 173),
    PipelineState.ERROR: (219, 50, 54),
    PipelineState.STOPPED: (128, 128, 128),
}

_BODY = (236, 239, 241)
_INK = (38, 50, 56)
_WHITE = (255, 255, 255)


@cache
def icon_for(state: PipelineState) -> Image.Image:
    """The RGBA icon for a state (drawn once per state; treat it as read-only)."""
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    # camera: viewfinder bump, body, lens
    draw.rectangle((16, 10, 30, 18), fill=_INK)
    draw.rounded_rectangle((4, 16, 60, 52), radius=8, fill=_BODY, outline=_INK, width=3)
    draw.ellipse((20, 21, 44, 45), fill=_INK)
    draw.ellipse((27, 28, 37, 38), fill=_BODY)
    # status dot, bottom right, with a white rim so it reads on any panel colour
    dot = (38, 38, 62, 62)
    draw.ellipse(dot, fill=DOT_COLOURS[state], outline=_WHITE, width=2)
    _draw_mark(draw, state)
    return image


def _draw_mark(draw: ImageDraw.ImageDraw, state: PipelineState) -> None:
    """A white mark inside the dot: pause bars, a hollow ring for a lost face, a cross for errors,
    three dots while a call waits for its sender."""
    if state is PipelineState.PAUSED:
        draw.rectangle((44, 44, 47, 56), fill=_WHITE)
        draw.rectangle((53, 44, 56, 56), fill=_WHITE)
    elif state is PipelineState.FACE_LOST:
        draw.ellipse((45, 45, 55, 55), outline=_WHITE, width=3)
    elif state is PipelineState.WAITING:
        for x in (43, 49, 55):
            draw.ellipse((x - 2, 48, x + 2, 52), fill=_WHITE)
    elif state is PipelineState.ERROR:
        draw.line((45, 45, 55, 55), fill=_WHITE, width=3)
        draw.line((45, 55, 55, 45), fill=_WHITE, width=3)
