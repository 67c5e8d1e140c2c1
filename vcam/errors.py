"""The one exception type whose message is shown to the user as-is."""


class VcamError(Exception):
    """A problem the user can fix: the message is one line saying what is wrong and what to do."""
