"""One writer per file: an advisory lock beside it (``FILE.lock``) that names its holder.

The lock is a ``flock`` on ``FILE.lock``, held for as long as the writer runs (a whole training
run, a sweep, an analysis appending its results). The kernel drops it when the holder dies, even
by SIGKILL, so a lock file left behind by a killed writer is stale by construction and the next
writer takes it over; a live one refuses with a one-line error naming host, pid, command and
start time. Readers never take it: a trajectory stays readable while it is being written.

flock conflicts between two descriptors of one process too; a registry of the locks this
process holds covers file systems (NFS) where it is emulated by per-process POSIX locks.
Where the file system has no locks at all, the holder's pid is checked instead (same host).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import time

from .errors import LandscapeError

_HELD: dict[str, "WriterLock"] = {}  # lock path -> lock held by this process
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def lock_path(target: str) -> str:
    """``FILE.lock``; for a name too long to take the suffix (file systems allow 255 bytes), a
    shortened name with a digest of the whole one."""
    target = os.fspath(target)
    folder, name = os.path.split(target)
    if len(os.fsencode(name)) + len(".lock") <= 255:
        return target + ".lock"
    import hashlib
    digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:16]
    return os.path.join(folder, f"{name[:200]}-{digest}.lock")


def _key(path: str) -> str:
    return os.path.realpath(path)


def _read_info(fd_or_path, attempts: int = 1) -> dict | None:
    """The lock file's details, or None; ``attempts`` > 1 reads again a few milliseconds later
    when the text does not parse (a writer rewrites it in place around every commit)."""
    for attempt in range(attempts):
        try:
            if isinstance(fd_or_path, int):
                text = os.pread(fd_or_path, 4096, 0).decode()
            else:
                with open(fd_or_path) as f:
                    text = f.read(4096)
            info = json.loads(text)
            return info if isinstance(info, dict) else None
        except OSError:
            return None
        except ValueError:
            if attempt + 1 < attempts:
                time.sleep(0.005)
    return None


def describe(info: dict | None) -> str:
    if not info:
        return "another process (it left no details)"
    return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')} "
            f"({info.get('command', '?')})")


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


class WriterLock:
    """``with WriterLock("runs/t.h5"): ...`` or ``lock = WriterLock(p).acquire(); lock.release()``.

    ``acquire`` raises ``LandscapeError`` naming the live holder; ``taken_over`` holds what a
    killed writer left (its details) when its stale lock was taken over.
    """

    def __init__(self, target: str, what: str = "writing"):
        self.target, self.what = os.fspath(target), what
        from .files import refuse_folder
        refuse_folder(self.target)
        self.path = lock_path(self.target)
        self.fd: int | None = None
        self.taken_over: dict | None = None

    def _refuse(self, info) -> LandscapeError:
        return LandscapeError(f"{self.target} is being written by {describe(info)}: wait for it "
                              f"to finish or stop it (one writer per file)")

    def acquire(self, wait: float = 0.5) -> "WriterLock":
        key = _key(self.path)
        if key in _HELD:
            raise LandscapeError(f"{self.target} is already being written by this process "
                                 f"({_HELD[key].what}): one writer per file")
        from .files import is_storage_error, storage_error
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._take(wait)
        except OSError as e:
            if not is_storage_error(e):
                raise
            raise storage_error(self.path, e) from None
        _HELD[key] = self
        return self

    def _take(self, wait: float) -> None:
        deadline = time.monotonic() + wait  # rides out a reader's momentary probe (writer_of)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _read_info(fd)
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise self._refuse(info) from None
            except OSError as e:
                if e.errno not in _NO_LOCKS:
                    os.close(fd)
                    raise
                info = _read_info(fd)  # no locks on this file system: judge by the pid
                if info and info.get("pid") != os.getpid() and (
                        info.get("host") != socket.gethostname() or _pid_alive(info.get("pid"))):
                    os.close(fd)
                    raise self._refuse(info) from None
            # a releasing holder unlinks the file before unlocking: make sure ours is current
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        self.taken_over = _read_info(fd)
        info = {"host": socket.gethostname(), "pid": os.getpid(),
                "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "command": " ".join([os.path.basename(sys.argv[0] or "python")] + sys.argv[1:])[:300],
                "what": self.what}
        self.info = {**info, "seq": 0, "writing": False}
        try:
            self._store()
        except OSError:  # a full disk has no block for it: leave no lock file behind
            os.unlink(self.path)
            os.close(fd)
            self.fd = None
            raise

    def _store(self) -> None:
        data = json.dumps(self.info).encode()
        os.pwrite(self.fd, data, 0)  # then cut what is left of a longer old text
        os.ftruncate(self.fd, len(data))

    @contextlib.contextmanager
    def writing(self):
        """Brackets one change of the target (a commit): a reader whose read overlapped it (the
        ``seq`` moved, or ``writing`` was set) reads again -- a sequence lock across processes."""
        exclusive = _record_lock(self.fd, fcntl.LOCK_EX)  # waits for readers inside a read
        self.info["writing"] = True
        self._store()
        try:
            yield
        finally:
            self.info["seq"] += 1
            self.info["writing"] = False
            self._store()
            if exclusive:
                _record_lock(self.fd, fcntl.LOCK_UN)

    def release(self) -> None:
        if self.fd is None:
            return
        _HELD.pop(_key(self.path), None)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)  # drops the flock
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def writer_of(target: str) -> dict | None:
    """The live writer of ``target`` (its details), or None when nobody writes it."""
    path = lock_path(target)
    held = _HELD.get(_key(path))
    if held is not None:
        return _read_info(held.fd) or {"pid": os.getpid()}
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: its details, read again if caught mid-rewrite
            return _read_info(fd, attempts=20) or {}
        except OSError:
            info = _read_info(fd)
            return info if info and info.get("host") == socket.gethostname() \
                and _pid_alive(info.get("pid")) else None
        return None  # a stale file left by a killed writer
    finally:
        os.close(fd)


# the byte of the lock file whose POSIX record lock brackets a commit: the writer holds it
# exclusively while it commits, a reader shares it while it reads, so the two never overlap
# (record locks and the writer's flock are independent on Linux)
COMMIT_BYTE = 1 << 20


def _record_lock(fd: int, how: int) -> bool:
    """``fcntl.lockf`` on ``COMMIT_BYTE`` (blocking); False where the file system has none."""
    try:
        fcntl.lockf(fd, how, 1, COMMIT_BYTE)
        return True
    except OSError as e:
        if e.errno in _NO_LOCKS + (errno.EBADF, errno.EACCES, errno.EAGAIN):
            return False
        raise


@contextlib.contextmanager
def between_commits(target: str):
    """Holds off ``target``'s writer while the body reads (a shared record lock on its lock
    file); yields True when held, False when there is no writer's lock file or no record locks
    (readers then check the commit marker instead). Not for the writer's own process."""
    if _key(lock_path(target)) in _HELD:
        yield False
        return
    try:
        fd = os.open(lock_path(target), os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        yield _record_lock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)  # drops the record lock


def commit_marker(target: str):
    """(seq, writing) of ``target``'s writer as its lock file says, without locking (cheap:
    read before and after every read of a trajectory); None when there is no lock file."""
    try:
        with open(lock_path(target), "rb") as f:
            text = f.read(4096)
    except OSError:
        return None
    try:
        info = json.loads(text)
        return info["seq"], bool(info["writing"])
    except (ValueError, KeyError, TypeError):
        return None, True  # being rewritten, or written by a writer without markers
