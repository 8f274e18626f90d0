"""Atomic file writes: everything the package writes goes through ``atomic_write``."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import secrets
from .errors import LandscapeError


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


def refuse_folder(path: str, example: str = "out.h5") -> None:
    """A one-line error when an output path names a folder (not a traceback)."""
    if os.path.isdir(path):
        raise LandscapeError(f"{path} is a folder: give a file path such as "
                             f"{os.path.join(path, example)}")


def atomic_write(path: str, write, suffix: str = "") -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place:
    a failure never leaves a half-written file nor destroys an existing one."""
    refuse_folder(path, "out" + suffix)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = create_new(os.path.join(folder, ".tmp-"), suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def jsonable(x):
    """numpy arrays and scalars (at any depth) as plain lists and numbers; NaN and ±inf as None
    (JSON has no such numbers: ``null``)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic)):
        return jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: str, payload) -> None:
    """Write valid JSON atomically (temp file + rename)."""
    text = json.dumps(jsonable(payload), indent=1, allow_nan=False)

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(path, write, suffix=".json")
