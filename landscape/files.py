"""Atomic file writes: everything the package writes goes through ``atomic_write``."""
from __future__ import annotations

import os
import secrets


def create_new(path_prefix: str, suffix: str = "") -> str:
    """Create an empty file ``<prefix><random><suffix>`` that did not exist, with the mode the
    umask gives (0666 & ~umask, as ``open`` would: ``tempfile.mkstemp`` would give 0600 and a
    colleague or a job under another account could not read the result)."""
    for _ in range(100):
        path = f"{path_prefix}{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(f"could not create a temporary file {path_prefix}*{suffix}")


def atomic_write(path: str, write, suffix: str = "") -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place:
    a failure never leaves a half-written file nor destroys an existing one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = create_new(os.path.join(folder, ".tmp-"), suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
