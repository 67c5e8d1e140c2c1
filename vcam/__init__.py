"""vcam: a neural-avatar virtual camera (face-vid2vid / LivePortrait)."""

import time

__version__ = "0.1.0"

started_at = time.monotonic()
"""When vcam was first imported: start-up times count from here (the interpreter starts ≈ 0.1 s before)."""
