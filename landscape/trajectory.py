"""The HDF5 trajectory file: written epoch by epoch by training, read by every analysis.

Layout (format ``landscape-trajectory``, version 2; the README's "File format" section is the
reference):

    /                      attrs: format, format_version, kind, config (JSON), model_spec (JSON),
                           group_names (JSON), landscape_version, torch_version, created,
                           epochs_complete (the commit marker: rows past it are ignored),
                           status / status_detail (only when a run ended early: 'nonfinite')
    /metrics/<name>        float64 [epoch]           (row k is epoch metrics/epoch[k])
    /metrics/groups/<name> float64 [epoch, layer]    attr group_names (one SI weight tensor each)
    /metrics/filters/<name> float64 [epoch, filter]  per filter (--groups filter), with
    /filters/layer, channel                          each filter's layer index and channel
    /checkpoints/<EEEEEE>  one dataset per state-dict entry, attr epoch
    /state/slot0, slot1    the model state for --resume: two fixed slots written in place in
                           turn (epoch E goes to slot E % 2, attr epoch), so the state of the
                           committed epoch is never overwritten and the file does not grow
    /data/...              subset_indices, noisy_indices, original_labels
    /timing/epoch_seconds  wall time of each epoch (kept out of /metrics: not reproducible)
    /analyses/<name>       results appended by analyses

Version 1 kept the state as a new group per epoch (``/state/<EEEEEE>``), which left one dead
model state in the file per epoch; such files are read as they are and repacked into version 2
when written again (``repack``).

Concurrency: one writer per file (``locks.WriterLock`` on ``FILE.lock``, held for the whole run);
the writer opens the file only for the milliseconds in which an epoch is committed, without HDF5
file locking, so readers (a notebook's ``h5py.File``, ``landscape show``) never block it for
long; readers reopen the file each time and see only committed epochs: a reader shares a record
lock on the lock file that the writer takes exclusively while it commits, so a read never
overlaps a commit (where the file system has no record locks, a read that overlapped one is
retried).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import posixpath
import time

import h5py
import numpy as np
import torch

from .legacy import stored_config
from .version import __version__
from .errors import LandscapeError
from .files import METADATA_MARGIN, atomic_write, is_storage_error, reserve, storage_error
from .locks import WriterLock, between_commits, commit_marker, writer_of

FORMAT = "landscape-trajectory"
FORMAT_VERSION = 2
SLOTS = ("state/slot0", "state/slot1")
# Free space is tracked across closes: without it HDF5 forgets at close the space that replaced
# analyses or a discarded epoch freed, and the file grows with every rewrite.
CREATE_OPTIONS = {"fs_strategy": "fsm", "fs_persist": True, "fs_threshold": 1}


def _key(epoch: int) -> str:
    return f"{int(epoch):06d}"


def _open_in_this_process(path: str) -> bool:
    """Whether an h5py handle of this process holds ``path`` open: HDF5 would then share that
    handle's cached metadata (a stale, even inconsistent view) instead of reading the file."""
    real = os.path.realpath(path)
    for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        try:
            name = fid.name
        except (ValueError, RuntimeError):
            continue
        name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        if os.path.realpath(name) == real:
            return True
    return False


def _h5_open_error(path: str, e: OSError) -> LandscapeError:
    msg = str(e).lower()
    if "truncated" in msg:
        return LandscapeError(f"{path}: truncated HDF5 file (the copy is incomplete); "
                              f"restore it from a full copy")
    if "already open" in msg:
        return LandscapeError(f"{path} is open in this process in another mode: close that "
                              f"h5py handle first")
    return LandscapeError(f"{path}: not a readable HDF5 file ({e.__class__.__name__}); "
                          f"pass a trajectory written by 'landscape train'")


@contextlib.contextmanager
def _h5_file(path: str, mode: str):
    """An h5py file that works beside other handles. When this process already holds the file
    open (a notebook's ``h5py.File``), a fresh handle through a Python file object. Writing
    ('a'): no HDF5 file locking, so a reader holding the file open elsewhere does not block the
    writer (our own WriterLock keeps writers apart). Reading: h5py's default locking, then the
    settings another handle may have used (HDF5 refuses mismatched locking flags in one
    process), then none (a writer-like handle elsewhere holds HDF5's exclusive lock)."""
    with contextlib.ExitStack() as stack:
        if _open_in_this_process(path):
            raw = stack.enter_context(open(path, "rb" if mode == "r" else "r+b"))
            attempts = [lambda: h5py.File(raw, "r" if mode == "r" else "r+")]
        elif mode != "r":
            attempts = [lambda: h5py.File(path, mode, locking=False)]
        else:
            attempts = [lambda lk=lk: h5py.File(path, "r", locking=lk) for lk in (None, False, True)]
        f = error = None
        for attempt in attempts:
            try:
                f = attempt()
                break
            except OSError as e:
                error = e
                if "lock" not in str(e).lower():
                    break
        if f is None:
            raise _h5_open_error(path, error) from None
        stack.callback(f.close)
        yield f


@contextlib.contextmanager
def open_h5(path: str, mode: str = "r"):
    """Open a trajectory, turning every way it can be wrong into a one-line error."""
    if not os.path.exists(path):
        raise LandscapeError(f"{path}: no such file")
    with _h5_file(path, mode) as f:
        if f.attrs.get("format") != FORMAT:
            raise LandscapeError(f"{path}: HDF5 file but not a landscape trajectory (no "
                                 f"format={FORMAT!r} attribute); pass a file written by "
                                 f"'landscape train'")
        version = int(f.attrs.get("format_version", -1))
        if version > FORMAT_VERSION:
            raise LandscapeError(f"{path}: trajectory format version {version} is newer than "
                                 f"this landscape ({FORMAT_VERSION}); upgrade landscape")
        yield f


class _Incomplete(Exception):
    """A read that saw a commit half-way."""


class Corrupt(Exception):
    """A dataset whose stored checksum does not match its bytes (``where``: the dataset and,
    for per-epoch rows, the epochs of the damaged chunk)."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


def read_dataset(ds: h5py.Dataset, rows: int | None = None) -> np.ndarray:
    """``ds[()]`` (or its first ``rows`` rows), a checksum failure raised as ``Corrupt`` naming
    the dataset and, for per-epoch rows, the epochs of the damaged chunk."""
    try:
        return ds[()] if rows is None else ds[:rows]
    except OSError as e:
        if not _is_checksum_failure(e):
            raise
    if rows is None or not ds.chunks:
        raise Corrupt(ds.name)
    start = intact_rows(ds, rows)
    raise Corrupt(ds.name if start >= rows else f"{ds.name}, epochs {start + 1}-{min(rows, start + ds.chunks[0])}")


def intact_rows(ds: h5py.Dataset, rows: int) -> int:
    """How many of the first ``rows`` rows of a per-epoch dataset read back (chunk by chunk:
    the rows before the first chunk that fails its checksum)."""
    rows = min(rows, ds.shape[0])
    step = ds.chunks[0] if ds.chunks else max(rows, 1)
    for start in range(0, rows, step):
        try:
            ds[start:min(rows, start + step)]
        except (OSError, RuntimeError):
            return start
    return rows


def _is_checksum_failure(e: OSError) -> bool:
    text = str(e).lower()
    return "fletcher32" in text or "checksum" in text or "filter returned failure" in text


def corrupt_error(path: str, where: str) -> LandscapeError:
    return LandscapeError(f"{path}: checksum mismatch in {where}: the file is corrupt; "
                          f"'landscape repair {path} -o REPAIRED.h5' keeps every intact epoch")


def _file_stamp(path: str):
    """(inode, size, modification time) of ``path``: a change tells that a writer touched it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_h5(path: str, read, retry_seconds: float = 5.0):
    """``read(h5file)`` on a fresh read-only handle, consistent with the writer: a read that
    overlapped a commit of a live writer or a change by a writer that has come and gone (its
    lock file's marker moved, the file changed, or the read failed) is done again, so readers
    see whole committed epochs only."""
    deadline, failures, writers_seen = time.monotonic() + retry_seconds, 0, False
    with between_commits(path) as held:  # held: no commit can start before this read ends
        while True:
            # (with the lock held the marker is not read: closing another descriptor of the lock
            # file would drop the lock)
            before = None if held else commit_marker(path)
            stamp = _file_stamp(path)
            opened, error = False, None
            try:
                with open_h5(path) as f:
                    opened = True
                    result = read(f)
            except LandscapeError as e:
                if opened:  # read's own verdict: final
                    raise
                error = e
            except Corrupt as e:  # final, unless a live writer was rewriting that chunk
                error = corrupt_error(path, e.where)
            except Exception as e:  # h5py raises many kinds on a file changing under it
                error = e
            # a writer may have come during the read (the marker moved from None) or come and gone
            # (an analysis storing its results takes the lock for a moment and removes the lock
            # file, so a held record lock on that file guards nothing against the next one): the
            # file's change tells. A failed read is tried again until the deadline once a writer
            # was seen, else a few times; a file that keeps failing unchanged is damaged
            after = None if held else commit_marker(path)
            changed = _file_stamp(path) != stamp
            if error is None and not changed and (held or before == after and (before is None or not before[1])):
                return result
            failures += error is not None
            live = not held and writer_of(path) is not None
            writers_seen = writers_seen or live or changed or before is not None or after is not None
            if time.monotonic() < deadline and (live or changed or error is not None and (writers_seen or failures < 5)):
                time.sleep(0.01 * min(failures, 5) or 0.01)
                continue
            if error is None:  # the marker moved, but its writer is gone: it was killed mid-commit
                return result
            if isinstance(error, LandscapeError):
                raise error
            raise LandscapeError(f"{path}: damaged trajectory ({error}); it cannot be read") from None


def atomic_create(path: str, overwrite: bool, build, lock: WriterLock | None = None) -> None:
    """Create ``path`` by ``build(h5file)`` on a temporary file, then rename it into place, so a
    failure never leaves a half-written file nor destroys an existing one. Holds ``path``'s
    writer lock meanwhile (``lock`` when the caller holds it already)."""
    with contextlib.ExitStack() as stack:
        if lock is None:
            lock = stack.enter_context(WriterLock(path, "creating"))
        if os.path.exists(path) and not overwrite:
            raise LandscapeError(f"{path} already exists: pass resume to continue it or "
                                 f"overwrite to replace it", "resume", "overwrite")

        def write(tmp):
            with h5py.File(tmp, "w", **CREATE_OPTIONS) as f:
                build(f)
        atomic_write(path, write, suffix=".h5")


OPTIMIZER_PREFIX = "optimizer."  # resume-only state (momentum buffers): in the slots, not checkpoints


def momentum_key(name: str) -> str:
    """The key of an SI parameter's momentum buffer in a stored training state."""
    return f"{OPTIMIZER_PREFIX}momentum.{name}"


def optimizer_keys(optimizer: str, names) -> list:
    """The keys of an optimizer's state in a stored training state, in its buffers' order:
    momentum buffers per parameter, or Adam's first moments, second moments and step count."""
    if optimizer == "adam":
        return ([f"{OPTIMIZER_PREFIX}exp_avg.{n}" for n in names] + [f"{OPTIMIZER_PREFIX}exp_avg_sq.{n}" for n in names]
                + [f"{OPTIMIZER_PREFIX}step"])
    return [momentum_key(n) for n in names]


def model_state(state: dict) -> dict:
    """The model's part of a training state (without the optimizer's buffers)."""
    return {k: v for k, v in state.items() if not k.startswith(OPTIMIZER_PREFIX)}


CHECKSUMS = True  # Fletcher-32 on every dataset written (off only to measure its cost)


def checksummed(group: h5py.Group, name: str, data) -> h5py.Dataset:
    """A dataset written with HDF5's Fletcher-32 checksum (one chunk), verified by HDF5 on every
    read: a flipped bit is an error, never a plausible number. Scalars and empty arrays cannot
    be chunked and carry none."""
    data = np.asarray(data)
    if data.ndim == 0 or data.size == 0 or data.dtype.kind not in "biufc" or not CHECKSUMS:
        return group.create_dataset(name, data=data)
    return group.create_dataset(name, data=data, chunks=data.shape, fletcher32=True)


def _write_state(group: h5py.Group, state: dict) -> None:
    """One dataset per state entry, uncompressed: measured, gzip saved 3% (a ConvNet k=32) to
    12% (a trained MLP) of a checkpoint for 13x its write time (14 ms against 1 ms per ConvNet
    k=32 checkpoint), a cost every checkpointed epoch would pay; checksummed."""
    for name, tensor in state.items():
        checksummed(group, name, tensor.detach().cpu().numpy())


def _read_state(group: h5py.Group) -> dict:
    return {name: torch.from_numpy(np.asarray(read_dataset(ds))) for name, ds in group.items()}


def _create_slots(f: h5py.File, state: dict, epoch: int) -> None:
    """The two fixed resume slots (contiguous, uncompressed: overwritten in place)."""
    for i, slot in enumerate(SLOTS):
        g = f.create_group(slot)
        _write_state(g, state)
        g.attrs["epoch"] = epoch if i == epoch % 2 else -1


def _committed_state(f: h5py.File, path: str) -> tuple[int, dict]:
    """(epochs_complete, its model state) in either layout."""
    done = int(f.attrs["epochs_complete"])
    for name in SLOTS + (f"state/{_key(done)}",):  # version 2, then version 1
        if name in f and (name not in SLOTS or int(f[name].attrs["epoch"]) == done):
            return done, _read_state(f[name])
    raise LandscapeError(f"{path}: no model state for epoch {done}; the file is damaged and "
                         f"cannot be resumed")


def storage(path: str) -> dict:
    """The file's size and its live data (the stored size of every dataset): the difference is
    space HDF5 holds for nothing, which ``repack`` returns."""
    live = []

    def visit(_, obj):
        if isinstance(obj, h5py.Dataset):
            live.append(obj.id.get_storage_size())
    read_h5(path, lambda f: f.visititems(visit))
    return {"file_bytes": os.path.getsize(path), "live_bytes": int(sum(live))}


def _discard_uncommitted(f) -> None:
    """Drop whatever a killed run wrote past the last committed epoch."""
    done = int(f.attrs["epochs_complete"])
    def trim(_, obj):
        if isinstance(obj, h5py.Dataset) and obj.maxshape[0] is None and obj.shape[0] > done:
            obj.resize(done, axis=0)
    for parent in ("metrics", "timing"):  # every per-epoch row, at any depth
        if parent in f:
            f[parent].visititems(trim)
    for key in list(f.get("checkpoints", {}).keys()):
        if int(key) > done:
            del f[f"checkpoints/{key}"]


def repack(path: str, lock: WriterLock | None = None) -> dict:
    """Rewrite ``path`` with its live data only (atomically, under its writer lock): returns the
    sizes before and after. Version-1 files become version 2 (their resume state in the slots)."""
    before = storage(path)

    def copy(tmp):
        with open_h5(path) as src, h5py.File(tmp, "w", **CREATE_OPTIONS) as dst:
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            for name in src:
                if name != "state":
                    src.copy(src[name], dst, name=name)
            _discard_uncommitted(dst)
            if "state" in src:
                done, state = _committed_state(src, path)
                _create_slots(dst, state, done)
            dst.attrs["format_version"] = FORMAT_VERSION

    with contextlib.ExitStack() as stack:
        if lock is None:
            stack.enter_context(WriterLock(path, "repack"))
        atomic_write(path, copy, suffix=".h5")
    return {"before": before, "after": storage(path)}


def write_header(f: h5py.File, *, config: dict, model_spec: dict, group_names: list[str],
                 kind: str, epochs_complete: int = 0) -> None:
    """Root attributes and empty groups shared by every kind of trajectory."""
    f.attrs.update({
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
        "config": json.dumps(config, sort_keys=True),
        "model_spec": json.dumps(model_spec, sort_keys=True),
        "group_names": json.dumps(list(group_names)),
        "landscape_version": __version__, "torch_version": str(torch.__version__),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "epochs_complete": int(epochs_complete),
    })
    f.create_group("metrics/groups").attrs["group_names"] = json.dumps(list(group_names))
    f.create_group("timing")
    f.create_group("checkpoints")


def _check_shapes(f: h5py.File, path: str) -> None:
    """Before a writer touches a file: every per-epoch dataset holds at most one row past the
    committed epochs (what a kill leaves), and the resume slots have the shapes of the initial
    state; a damaged size would make resizing it hang or grow the file without end."""
    done = int(f.attrs["epochs_complete"])
    bad = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.maxshape and obj.maxshape[0] is None and obj.shape[0] > done + 1:
            bad.append(f"{obj.name} holds {obj.shape[0]} rows for {done} committed epochs")
    for parent in ("metrics", "timing"):
        if parent in f:
            f[parent].visititems(visit)
    start = f.get(f"checkpoints/{_key(0)}")
    for slot in SLOTS:
        if slot in f and start is not None:
            for name, ds in f[slot].items():
                if name in start and ds.shape != start[name].shape:
                    bad.append(f"{ds.name} has shape {ds.shape}, not {start[name].shape}")
    if bad:
        raise LandscapeError(f"{path}: damaged ({bad[0]}); 'landscape repair {path} -o REPAIRED.h5' "
                             f"keeps every intact epoch")


def _chunk_rows(row_shape: tuple) -> int:
    """Epochs per chunk of a per-epoch dataset: 64, fewer for wide rows (per-filter metrics), so
    a chunk is about 64 kB at most and a short run does not carry mostly-empty chunks."""
    return max(1, min(64, 8192 // max(1, int(np.prod(row_shape, dtype=np.int64)))))


def commit_bytes(rows: dict, state: dict, checkpoint: bool) -> int:
    """An upper bound of what committing one epoch adds to the file: a new chunk for every row
    (the epoch number and the timing included), the checkpoint's tensors with an object header
    each, and HDF5's metadata margin, with a quarter on top."""
    shapes = [np.shape(v) for v in rows.values()] + [(), ()]
    chunks = sum(_chunk_rows(shape) * max(1, int(np.prod(shape))) * 8 for shape in shapes)
    tensors = (sum(t.numel() * t.element_size() + 4096 for t in model_state(state).values())
               if checkpoint else 0)
    return int(1.25 * (chunks + tensors)) + METADATA_MARGIN


def _flush_to_disk(f: h5py.File) -> None:
    """HDF5's buffers, then the operating system's, to the disk."""
    f.flush()
    try:
        os.fsync(f.id.get_vfd_handle())
    except (OSError, RuntimeError, TypeError, ValueError):  # a driver without a descriptor (a file object)
        pass


class TrajectoryWriter:
    """Appends one epoch at a time and commits it with the ``epochs_complete`` marker.

    Holds the file's writer lock from construction to ``close``; a second writer is refused."""

    def __init__(self, path: str, lock: WriterLock | None = None):
        self.path = path
        self.lock = lock or WriterLock(path, "resuming").acquire()
        try:
            version = read_h5(path, lambda f: int(f.attrs["format_version"]))
            read_h5(path, lambda f: _check_shapes(f, path))
            if version < 2:  # the old layout leaked a model state per epoch: rewrite it once
                repack(path, lock=self.lock)
            try:
                reserve(path, METADATA_MARGIN)
                with self._open() as f:
                    _discard_uncommitted(f)
            except OSError as e:
                if not is_storage_error(e):
                    raise
                raise storage_error(path, e, "the file is unchanged", f"continue with resume {path}", "resume") from None
        except BaseException:
            self.lock.release()
            raise

    @contextlib.contextmanager
    def _open(self):
        """The file is open only while an epoch is written: between epochs it is closed and
        consistent on disk, so a kill at almost any moment leaves a readable trajectory."""
        if self.lock.fd is None:
            raise LandscapeError(f"{self.path}: this writer was closed")
        try:
            with self.lock.writing(), open_h5(self.path, "a") as f:
                yield f
        except Corrupt as e:
            raise corrupt_error(self.path, e.where) from None

    @staticmethod
    def create(path: str, *, config: dict, model_spec: dict, group_names: list[str],
               initial_state: dict, data_arrays: dict, kind: str = "train",
               overwrite: bool = False, attrs: dict | None = None, row_shapes: dict | None = None,
               filter_layout=None, initial_rows: dict | None = None) -> "TrajectoryWriter":
        """A new trajectory at epoch 0 (``overwrite`` replaces an existing file, atomically);
        the metrics of ``row_shapes`` (path under /metrics -> shape of one epoch's row) exist
        from the start, empty, so a run that ends before its first epoch still reads like every
        other. ``filter_layout`` = (layer index, channel) of every filter group;
        ``initial_rows`` (path -> value, as an epoch's rows) the metrics of the initial point,
        stored under /initial (epoch 0 has no row under /metrics)."""
        def build(f):
            write_header(f, config=config, model_spec=model_spec, group_names=group_names, kind=kind)
            f.attrs.update(attrs or {})
            for name, shape in {"epoch": (), **(row_shapes or {})}.items():
                TrajectoryWriter._rows(f, f"metrics/{name}", tuple(shape))
            for name, value in (initial_rows or {}).items():
                checksummed(f, f"initial/{name}", np.asarray(value, dtype=np.float64))
            if filter_layout is not None:
                layer, channel = filter_layout
                checksummed(f, "filters/layer", np.asarray(layer, np.int64))
                checksummed(f, "filters/channel", np.asarray(channel, np.int64))
            TrajectoryWriter._rows(f, "timing/epoch_seconds", ())
            for name, arr in data_arrays.items():
                if arr is not None:
                    checksummed(f, f"data/{name}", np.asarray(arr))
            ck = f.create_group(f"checkpoints/{_key(0)}")
            ck.attrs["epoch"] = 0
            _write_state(ck, model_state(initial_state))
            _create_slots(f, initial_state, 0)

        lock = WriterLock(path, "training").acquire()
        try:
            atomic_create(path, overwrite, build, lock=lock)
            return TrajectoryWriter(path, lock)
        except BaseException:
            lock.release()
            raise

    @property
    def epochs_complete(self) -> int:
        with self._open() as f:
            return int(f.attrs["epochs_complete"])

    def attr(self, name: str):
        with self._open() as f:
            value = f.attrs[name]
        return value.decode() if isinstance(value, bytes) else value

    def row_shapes(self) -> dict[str, tuple]:
        """{path under /metrics: its row's shape} of the per-epoch rows the file holds (the
        epochs' numbers, ``epoch``, aside)."""
        shapes = {}
        with self._open() as f:
            f["metrics"].visititems(lambda n, o: shapes.update({n: o.shape[1:]})
                                    if isinstance(o, h5py.Dataset) and n != "epoch" else None)
        return shapes

    def initial_state(self) -> dict:
        """The model state at epoch 0 (the run's start)."""
        with self._open() as f:
            return _read_state(f[f"checkpoints/{_key(0)}"])

    def latest_state(self) -> tuple[int, dict]:
        with self._open() as f:
            return _committed_state(f, self.path)

    @staticmethod
    def _rows(f, name: str, row_shape: tuple) -> h5py.Dataset:
        """The growable float64 dataset of per-epoch rows ``name`` (created empty if missing)."""
        if name not in f:
            f.create_dataset(name, shape=(0,) + row_shape, maxshape=(None,) + row_shape,
                             dtype=np.float64, chunks=(_chunk_rows(row_shape),) + row_shape,
                             fletcher32=CHECKSUMS)
        return f[name]

    @staticmethod
    def _append(f, name: str, row) -> None:
        row = np.ascontiguousarray(row, dtype=np.float64).reshape((1,) + np.shape(row))
        # h5py's low-level calls: the high-level lookup, resize and assignment cost more than
        # the write itself, and a run appends some 50 rows (a ResNet some 300) every epoch
        try:
            dataset = h5py.h5d.open(f.id, name.encode())
        except KeyError:
            dataset = TrajectoryWriter._rows(f, name, row.shape[1:]).id
        n = dataset.shape[0]
        dataset.set_extent((n + 1,) + row.shape[1:])
        space = dataset.get_space()
        space.select_hyperslab((n,) + (0,) * (row.ndim - 1), row.shape)
        dataset.write(h5py.h5s.create_simple(row.shape), space, row)

    def append_epoch(self, epoch: int, rows: dict, state: dict, checkpoint: bool,
                     seconds: float = float("nan")) -> None:
        """Commit one epoch: ``rows`` maps a path under /metrics ('train_loss', 'groups/elr',
        'filters/elr', ...) to that epoch's value (a number or a row); ``state`` is the model
        state (the resume slot, and a checkpoint when ``checkpoint``). The space the commit
        can take is reserved first (``files.reserve``), so a full disk refuses the epoch before
        the file is touched: a ``StorageError`` saying how many epochs are safe."""
        safe = (f"{epoch - 1} epochs are safe in {self.path}" if epoch != 2 else
                f"1 epoch is safe in {self.path}")
        try:
            reserve(self.path, commit_bytes(rows, state, checkpoint) + pending_bytes(self.path))
            self._commit(epoch, rows, state, checkpoint, seconds)
        except OSError as e:  # disk full, quota, I/O error: the previous commit stands
            if is_storage_error(e):
                raise storage_error(self.path, e, safe, f"continue with resume {self.path}", "resume") from None
            raise LandscapeError(f"{self.path}: writing epoch {epoch} failed ({e}); {safe}: fix the "
                                 f"cause and continue with resume", "resume") from None

    def _commit(self, epoch, rows, state, checkpoint, seconds) -> None:
        with self._open() as f:
            done = int(f.attrs["epochs_complete"])
            if epoch != done + 1:
                raise LandscapeError(f"{self.path}: epoch {epoch} does not follow the committed "
                                     f"epoch {done}")
            self._append(f, "metrics/epoch", epoch)
            for name, value in rows.items():
                self._append(f, f"metrics/{name}", value)
            self._append(f, "timing/epoch_seconds", seconds)
            if checkpoint:
                ck = f.create_group(f"checkpoints/{_key(epoch)}")
                ck.attrs["epoch"] = epoch
                _write_state(ck, model_state(state))
            # the other slot holds the committed epoch's state: this one may be overwritten
            slot = f[SLOTS[epoch % 2]]
            slot.attrs.modify("epoch", -1)
            for name, tensor in state.items():  # low-level, as _append (a ResNet has ~180 entries)
                h5py.h5d.open(slot.id, name.encode()).write(
                    h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(tensor.detach().cpu().numpy()))
            slot.attrs.modify("epoch", epoch)
            _flush_to_disk(f)  # the epoch's data on disk before the marker that commits it
            f.attrs.modify("epochs_complete", epoch)  # the commit
            _fold_pending(f, self.path)  # analyses made of the live file meanwhile
        _remove_folded(self.path)

    def set_attrs(self, values: dict) -> None:
        """Root attributes, written together in one commit."""
        with self._open() as f:
            for name, value in values.items():
                f.attrs.modify(name, value)

    def close(self) -> None:
        """Nothing stays open between epochs; folds the analyses still waiting, releases the
        writer lock."""
        try:
            if self.lock.fd is not None and _pending(self.path):
                reserve(self.path, pending_bytes(self.path) + METADATA_MARGIN)
                with self._open() as f:
                    _fold_pending(f, self.path)
                _remove_folded(self.path)
        except (OSError, LandscapeError):  # they stay beside the file, read by every reader
            pass
        finally:
            self.lock.release()


class Trajectory:
    """Read access to a trajectory: config, metrics as numpy arrays, checkpoints, models.

    >>> t = Trajectory("traj.h5")
    >>> t.metrics["train_loss"], t.group_metrics["elr"], t.checkpoint_epochs
    >>> model = t.load_model(t.checkpoint_epochs[-1])
    """

    def __init__(self, path: str):
        self.path = path

        def read(f):
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            done = int(attrs["epochs_complete"])
            rows = {}
            f["metrics"].visititems(lambda n, o: rows.__setitem__(n, read_dataset(o, done))
                                    if isinstance(o, h5py.Dataset) else None)
            timing = {n: read_dataset(ds, done) for n, ds in f.get("timing", {}).items()}
            if any(len(v) < done for d in (rows, timing) for v in d.values()):
                raise _Incomplete(f"fewer rows than the {done} committed epochs")
            return {"attrs": attrs, "done": done, "rows": rows, "timing": timing,
                    "filter_layout": {n: read_dataset(ds) for n, ds in f.get("filters", {}).items()},
                    "checkpoints": sorted(int(k) for k in f["checkpoints"].keys() if int(k) <= done),
                    "data": {n: read_dataset(ds) for n, ds in f.get("data", {}).items()},
                    "initial": _datasets(f.get("initial")),
                    "resumable": any(s in f and int(f[s].attrs.get("epoch", -1)) == done for s in SLOTS)
                    or f"state/{_key(done)}" in f,
                    "analyses": _analysis_names(f)}

        r = read_h5(path, read)
        try:
            self.attrs = r["attrs"]
            self.config = json.loads(self.attrs["config"])
            self.model_spec = json.loads(self.attrs["model_spec"])
            self.group_names = json.loads(self.attrs["group_names"])
        except (KeyError, ValueError) as e:
            raise LandscapeError(f"{path}: damaged trajectory ({e}); it cannot be read") from None
        self.kind = str(self.attrs.get("kind", "train"))
        self.epochs_complete = r["done"]
        rows, self.timing = r["rows"], r["timing"]

        def under(prefix):
            return {n[len(prefix):]: v for n, v in rows.items()
                    if n.startswith(prefix) and "/" not in n[len(prefix):]}
        self.metrics = under("")                         # per epoch: means over its mini-batches
        self.group_metrics = under("groups/")            # [epoch, layer]
        self.filter_metrics = under("filters/")          # [epoch, filter] (--groups filter)
        # at each epoch's end, no update, the official protocol (checkpoint_metrics)
        self.checkpoint_metrics = under("checkpoint/")
        self.checkpoint_group_metrics = under("checkpoint/groups/")
        self.checkpoint_filter_metrics = under("checkpoint/filters/")
        # the same of the initial point (epoch 0, before any step): {path under /metrics: value}
        self.initial_rows = r["initial"]
        # each filter group's layer (index into group_names) and channel
        self.filter_layer = r["filter_layout"].get("layer")
        self.filter_channel = r["filter_layout"].get("channel")
        self.checkpoint_epochs, self.data = r["checkpoints"], r["data"]
        self.resumable = r["resumable"]
        self.analyses = sorted(set(r["analyses"]) | {name for _, name in _pending(path)})

    def problems(self) -> list[str]:
        """What is missing or not finite in the committed epochs, one line each: no resume
        state (a network run's file cannot be continued), metrics with NaN or inf (the test
        metrics of epochs not evaluated, NaN by design, aside)."""
        out = []
        if self.kind == "train" and not self.resumable:
            out.append(f"no resume state for epoch {self.epochs_complete}: --resume cannot continue it")
        evaluated = None
        if self.kind == "train" and self.epochs_complete:
            from .config import TrainConfig, is_eval_epoch
            cfg = TrainConfig.from_dict(self.config)
            evaluated = np.array([is_eval_epoch(cfg, int(e)) for e in self.epochs])
        for name, values in sorted(self.metrics.items()):
            bad = ~np.isfinite(np.asarray(values, dtype=float))
            if name.startswith("test_") and evaluated is not None:
                bad &= evaluated
            if bad.any():
                epochs = self.epochs[bad] if len(self.epochs) == len(bad) else np.flatnonzero(bad) + 1
                out.append(f"{name} is not finite at epoch{'s' if bad.sum() > 1 else ''} "
                           f"{_compact([int(e) for e in epochs])}")
        return out

    @property
    def status(self) -> str:
        """'nonfinite' (the run met NaN/inf and ended: see ``status_detail``), 'done' (every
        configured epoch committed) or 'partial' (more to train: --resume)."""
        if self.attrs.get("status"):
            return str(self.attrs["status"])
        if self.kind != "train":
            return "done"
        return "done" if self.epochs_complete >= int(self.config.get("epochs", 0)) else "partial"

    @property
    def status_detail(self) -> dict:
        return json.loads(self.attrs.get("status_detail") or "{}")

    @property
    def epochs(self) -> np.ndarray:
        return self.metrics.get("epoch", np.zeros(0)).astype(int)

    def resolve_epoch(self, epoch: int | None) -> int:
        """None or -1 mean the last checkpoint; other epochs must have one."""
        if not self.checkpoint_epochs:
            raise LandscapeError(f"{self.path}: holds no checkpoint")
        if epoch is None or epoch == -1:
            return self.checkpoint_epochs[-1]
        if epoch not in self.checkpoint_epochs:
            raise LandscapeError(
                f"{self.path}: no checkpoint at epoch {epoch}; stored epochs: "
                f"{_compact(self.checkpoint_epochs)}")
        return epoch

    def state_dict(self, epoch: int | None = None) -> dict:
        epoch = self.resolve_epoch(epoch)
        return read_h5(self.path, lambda f: _read_state(f[f"checkpoints/{_key(epoch)}"]))

    def checkpoint(self, epoch: int | None = None) -> dict:
        """One stored epoch with what rebuilds its model: state_dict, model_spec, config,
        si_group_names, epoch, rho."""
        if self.kind != "train":
            raise LandscapeError(f"{self.path}: only network trajectories hold model checkpoints")
        epoch = self.resolve_epoch(epoch)
        return {"state_dict": self.state_dict(epoch), "model_spec": self.model_spec,
                "config": self.config, "si_group_names": self.group_names, "epoch": int(epoch),
                "rho": float(self.attrs["rho"])}

    def load_model(self, epoch: int | None = None, device="cpu") -> torch.nn.Module:
        return rebuild_model(self.model_spec, self.config, self.state_dict(epoch), device)


def rebuild_model(spec: dict, config: dict, state: dict, device="cpu") -> torch.nn.Module:
    """The model of a stored point, in the run's own dtype (a float64 run stays float64)."""
    from .models import build_model
    config = stored_config(config)
    model = build_model(spec, config["init_seed"])
    model.to(getattr(torch, config["dtype"]))
    model.load_state_dict(state)
    return model.to(device)


def _compact(epochs: list[int]) -> str:
    if len(epochs) <= 8:
        return ", ".join(map(str, epochs))
    return ", ".join(map(str, epochs[:4])) + ", ..., " + ", ".join(map(str, epochs[-3:]))


def append_analysis(path: str, name: str, arrays: dict, attrs: dict) -> None:
    """Store an analysis under /analyses/<name> (``name`` may nest: 'interpolation/a@1--b@2'),
    replacing only that group. Everything is computed before this is called; the file is
    touched only here, under its writer lock, and the new group is written beside the old one
    and swapped in, so an interruption leaves the previous results whole. While a run writes
    the file, the results go to a file of their own beside it (``pending_folder``), which every
    reader merges at once and the writer folds into the trajectory at its next commit."""
    nbytes = sum(np.asarray(v).nbytes + 4096 for v in arrays.values())
    try:
        if writer_of(path) is not None:
            return _store_pending(path, name, arrays, attrs)
        with WriterLock(path, f"appending /analyses/{name}") as lock:
            reserve(path, int(1.25 * nbytes) + METADATA_MARGIN)
            with lock.writing(), open_h5(path, "a") as f:
                _fold_pending(f, path)
                _replace_analysis(f, name, arrays, attrs)
            _remove_folded(path)
    except OSError as e:
        if not is_storage_error(e):
            raise
        raise storage_error(path, e, f"the results were not stored in it (/analyses/{name})") from None
    except LandscapeError as e:
        if "is being written by" not in str(e):
            raise
        _store_pending(path, name, arrays, attrs)  # a run started meanwhile


def pending_folder(path: str) -> str:
    """Where analyses of a file being written wait for its writer: ``FILE.pending/``."""
    return os.fspath(path) + ".pending"


def _store_pending(path: str, name: str, arrays: dict, attrs: dict) -> None:
    folder = pending_folder(path)
    stamp = f"{time.time_ns():020d}"

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["name"] = name
            _replace_analysis(f, name, arrays, attrs)
    for attempt in range(20):  # the writer removes the folder once it has folded its files in
        os.makedirs(folder, exist_ok=True)
        try:
            return atomic_write(os.path.join(folder, f"{stamp}.h5"), write, suffix=".h5")
        except LandscapeError:
            if os.path.isdir(folder) or attempt == 19:
                raise


def _pending(path: str) -> list[tuple[str, str]]:
    """[(file, analysis name)] waiting for ``path``'s writer, oldest first (unreadable ones
    skipped: a file being renamed into place, or damaged)."""
    folder = pending_folder(path)
    out = []
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        if not entry.endswith(".h5") or entry.startswith("."):
            continue
        try:
            with h5py.File(os.path.join(folder, entry), "r") as f:
                out.append((os.path.join(folder, entry), str(f.attrs["name"])))
        except (OSError, KeyError):
            continue
    return out


def _fold_pending(f: h5py.File, path: str) -> None:
    """Copy the waiting analyses into the open trajectory (the files are removed after the
    trajectory is closed: ``_remove_folded``); one that cannot be read stays where it is."""
    for file, name in _pending(path):
        try:
            with h5py.File(file, "r") as src:
                g = src[f"analyses/{name}"]
                arrays = {k: read_dataset(ds) for k, ds in g.items() if isinstance(ds, h5py.Dataset)}
                attrs = dict(g.attrs)
        except (OSError, KeyError, Corrupt):
            continue
        _replace_analysis(f, name, arrays, attrs)
        _FOLDED.setdefault(path, []).append(file)


def pending_bytes(path: str) -> int:
    """The size of the analyses waiting for ``path``'s writer."""
    return sum(os.path.getsize(file) + 4096 for file, _ in _pending(path))


_FOLDED: dict = {}  # trajectory -> pending files folded into it, removed once it is closed


def _remove_folded(path: str) -> None:
    for file in _FOLDED.pop(path, []):
        with contextlib.suppress(FileNotFoundError):
            os.remove(file)
    with contextlib.suppress(OSError):
        os.rmdir(pending_folder(path))


def _replace_analysis(f: h5py.File, name: str, arrays: dict, attrs: dict) -> None:
    """Write /analyses/<name> beside the old one, then swap it in."""
    f.require_group(posixpath.dirname(f"analyses/{name}"))
    tmp = f"analyses/.tmp-{name.replace('/', '.')}"
    if tmp in f:
        del f[tmp]
    g = f.create_group(tmp)
    for k, v in arrays.items():
        checksummed(g, k, v)
    for k, v in attrs.items():
        g.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
    if f"analyses/{name}" in f:
        del f[f"analyses/{name}"]
    f.move(tmp, f"analyses/{name}")


def _datasets(group) -> dict:
    """{path: value} of every dataset below an HDF5 group (empty for None)."""
    out = {}
    if group is not None:
        group.visititems(lambda n, o: out.__setitem__(n, read_dataset(o)) if isinstance(o, h5py.Dataset) else None)
    return out


def _analysis_names(f) -> list[str]:
    """Every stored analysis: groups under /analyses holding datasets ('sharpness',
    'interpolation/a@15--b@15', ...)."""
    names = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and any(isinstance(v, h5py.Dataset) for v in obj.values()) \
                and not name.split("/")[-1].startswith("."):
            names.append(name)
    if "analyses" in f:
        f["analyses"].visititems(visit)
    return sorted(names)


def read_analysis(path: str, name: str) -> tuple[dict, dict]:
    """The arrays and attributes of /analyses/<name> (the newest, waiting ones included)."""
    for file, pending in reversed(_pending(path)):
        if pending == name:
            with h5py.File(file, "r") as f:
                g = f[f"analyses/{name}"]
                return {k: read_dataset(ds) for k, ds in g.items() if isinstance(ds, h5py.Dataset)}, dict(g.attrs)

    def read(f):
        if f"analyses/{name}" not in f:
            stored = _analysis_names(f)
            raise LandscapeError(f"{path}: no /analyses/{name}"
                                 + (f" (stored: {', '.join(stored)})" if stored else "; run "
                                    f"'landscape {name.split('/')[0]} {path}' first"))
        g = f[f"analyses/{name}"]
        return {k: read_dataset(ds) for k, ds in g.items() if isinstance(ds, h5py.Dataset)}, dict(g.attrs)
    return read_h5(path, read)
