"""Atomic file writes: everything the package writes goes through ``atomic_write``."""
from __future__ import annotations

import errno
import json
import math
import os

import numpy as np
import secrets
from .errors import ArgumentError, LandscapeError, StorageError

# errors of the file system rather than of the program: reported in one line, never a traceback
FULL = (errno.ENOSPC, errno.EDQUOT)
REFUSED = (errno.EROFS, errno.EACCES, errno.EPERM)
# a reservation's margin for HDF5's own metadata (object headers, B-trees, free-space records)
METADATA_MARGIN = 1 << 18


def mount_point(path: str) -> str:
    """The mount point of the file system holding ``path`` (or where it would be created)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def storage_error(path: str, e: OSError, safe: str = "nothing was written",
                  then: str = "run the command again", *arguments: str) -> StorageError:
    """The one-line error of a write to ``path`` that failed with ``e`` (``is_storage_error``):
    ``safe`` says what is safe, ``then`` how to go on once space is freed."""
    where = mount_point(path)
    if e.errno in FULL:
        what = "no space left" if e.errno == errno.ENOSPC else "disk quota exceeded"
        return StorageError(f"{what} on {where}: {safe}; free space and {then}", *arguments)
    if e.errno in REFUSED:
        return StorageError(f"cannot write {path} ({os.strerror(e.errno).lower()}): {safe}; "
                            f"choose a writable folder")
    if e.errno == errno.ENOENT:
        return StorageError(f"cannot write {path} (this file system takes no new files there): {safe}; "
                            f"choose a writable folder")
    if e.errno == errno.ENAMETOOLONG:
        return StorageError(f"{path}: file name too long for {where}: {safe}; choose a shorter name")
    return StorageError(f"writing {path} failed ({os.strerror(e.errno or 0) or e}): {safe}")


def is_storage_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in FULL + REFUSED + (errno.ENAMETOOLONG, errno.EIO, errno.ENOENT)


def reserve(path: str, nbytes: int) -> None:
    """Allocate ``nbytes`` past the end of ``path`` before HDF5 writes there: a full disk then
    fails here, before the file is touched, and not inside HDF5's writes, whose failure leaves
    its metadata half-written. HDF5 writes the new data into the reserved blocks and cuts the
    file back to its end of data when it closes. Raises ``OSError`` (``FULL``) when the space is
    not there; where the file system cannot allocate ahead, the free space is checked instead."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        try:
            os.posix_fallocate(fd, size, int(nbytes))
        except OSError as e:
            if e.errno in FULL:
                os.ftruncate(fd, size)  # a partial allocation: give it back
                raise
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            st = os.fstatvfs(fd)
            if st.f_bavail * st.f_frsize < nbytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path) from None
    finally:
        os.close(fd)


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


def refuse_input_as_output(out: str, *inputs: str) -> None:
    """``ArgumentError`` when the output ``out`` is one of the ``inputs`` (the same file under any
    name): writing it would destroy what is being read."""
    for path in inputs:
        if os.path.exists(out) and os.path.exists(path) and os.path.samefile(out, path):
            raise ArgumentError(f"output {out} is the input {path}: writing it would destroy the "
                                f"input; choose another output path", "out")


def atomic_write(path: str, write, suffix: str = "") -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place:
    a failure never leaves a half-written file nor destroys an existing one; a write the file
    system refuses (full, read-only, name too long) is a one-line ``StorageError``."""
    refuse_folder(path, "out" + suffix)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = create_new(os.path.join(folder, ".tmp-"), suffix)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        if not is_storage_error(e):
            raise
        kept = "the previous file is unchanged" if os.path.exists(path) else "nothing was written"
        raise storage_error(path, e, kept) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
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
