"""Keypoint streaming: a video call that sends head motion instead of video.

The sender (``vcam send``) tracks the face, reads its motion and runs vcam's motion stage as
``vcam run`` does, then sends the resulting pose and expression — a quaternion, translation,
scale, the K×3 expression deltas and the eye/lip retargeting ratios, a few dozen bytes a frame —
to the receiver (``vcam receive``), whose pipeline renders the avatar from a profile both sides
hold into its own virtual camera, preview or file. ``vcam tray --receive`` / ``--send`` run the
same ends under the tray.

Modules, one concern each:

- :mod:`~vcam.stream.bits` — bit I/O and the Golomb-Rice code
- :mod:`~vcam.stream.motion_vector` — a HeadMotion as one flat vector, and back
- :mod:`~vcam.stream.codec` — that vector ⇄ quantised integers ⇄ key/delta frame bodies
- :mod:`~vcam.stream.packet` — datagram framing, HMAC, pairing and session keys, replay window
- :mod:`~vcam.stream.transport` — the UDP links (handshake, acknowledgements, status)
- :mod:`~vcam.stream.playout` — the receiver's clock: jitter delay, interpolation, extrapolation
- :mod:`~vcam.stream.ends` — ``vcam send`` and the receiver's pairing and motion, on the app's model and profiles
- :mod:`~vcam.stream.call` — a call's end in the pipeline: the received motion as its motion source, the sent motion as a stage
- :mod:`~vcam.stream.status_text` — the link's status in words, for the status line and the tray
- :mod:`~vcam.stream.cli` — the options of ``vcam send``, ``vcam receive`` and ``vcam tray --send/--receive``, and their status line
"""
