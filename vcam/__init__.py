"""vcam: a neural-avatar virtual camera (face-vid2vid / LivePortrait)."""

__version__ = "0.1.0"
