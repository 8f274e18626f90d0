"""The exception types of the library: the command line prints their message on one line."""
from __future__ import annotations


class LandscapeError(Exception):
    """Bad input or state that the user can fix; the message names the problem and the fix.
    ``arguments``: the Python argument names the message uses (``elr``, ``batch_size``), which
    the command line shows as its flags (``--elr``, ``--batch-size``)."""

    def __init__(self, message: str = "", *arguments: str):
        super().__init__(message)
        self.arguments = arguments


class ArgumentError(LandscapeError, ValueError):
    """A bad argument of a library call: the message names it as the Python argument it is.

    >>> raise ArgumentError("elr must be a positive number, got -1", "elr")
    Traceback (most recent call last):
    ...
    landscape.errors.ArgumentError: elr must be a positive number, got -1
    """


class StorageError(LandscapeError):
    """A write the file system refused (no space, over quota, read-only, no permission): what
    is safe and how to go on. The command line exits with ``exit_status`` 4 for it."""
    exit_status = 4
