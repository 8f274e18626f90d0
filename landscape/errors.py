"""One exception type for every user-facing problem: the CLI prints its message on one line."""


class LandscapeError(Exception):
    """Bad input or state that the user can fix; the message names the problem and the fix."""
