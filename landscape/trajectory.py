"""The HDF5 trajectory file: written epoch by epoch by training, read by every analysis.

Layout (format ``landscape-trajectory``, version 1; the README's "File format" section is the
reference):

    /                      attrs: format, format_version, kind, config (JSON), model_spec (JSON),
                           group_names (JSON), landscape_version, torch_version, created,
                           epochs_complete (the commit marker: rows past it are ignored)
    /metrics/<name>        float64 [epoch]           (row k is epoch metrics/epoch[k])
    /metrics/groups/<name> float64 [epoch, group]    attr group_names
    /checkpoints/<EEEEEE>  one dataset per state-dict entry (gzip), attr epoch
    /state/<EEEEEE>        the latest model state, kept for --resume
    /data/...              subset_indices, noisy_indices, original_labels
    /timing/epoch_seconds  wall time of each epoch (kept out of /metrics: not reproducible)
    /analyses/<name>       results appended by analyses
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os

import h5py
import numpy as np
import torch

from .errors import LandscapeError
from .files import atomic_write

FORMAT = "landscape-trajectory"
FORMAT_VERSION = 1


def _key(epoch: int) -> str:
    return f"{int(epoch):06d}"


def parse_source(source: str) -> tuple[str, int | None]:
    """``traj.h5@EPOCH`` -> (path, epoch); ``traj.h5`` -> (path, None); EPOCH may be 'last'."""
    path, sep, epoch = source.rpartition("@")
    if not sep:
        return source, None
    if epoch == "last":
        return path, -1
    try:
        return path, int(epoch)
    except ValueError:
        raise LandscapeError(f"bad epoch in {source!r}: write PATH@EPOCH with an integer epoch "
                             f"or 'last'") from None


def open_h5(path: str, mode: str = "r") -> h5py.File:
    """Open a trajectory, turning every way it can be wrong into a one-line error."""
    if not os.path.exists(path):
        raise LandscapeError(f"{path}: no such file")
    try:
        f = h5py.File(path, mode, locking=False)
    except OSError as e:
        msg = str(e).lower()
        if "truncated" in msg:
            raise LandscapeError(f"{path}: truncated HDF5 file (the copy is incomplete); "
                                 f"restore it from a full copy") from None
        raise LandscapeError(f"{path}: not a readable HDF5 file ({e.__class__.__name__}); "
                             f"pass a trajectory written by 'landscape train'") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise LandscapeError(f"{path}: HDF5 file but not a landscape trajectory (no "
                             f"format={FORMAT!r} attribute); pass a file written by 'landscape train'")
    version = int(f.attrs.get("format_version", -1))
    if version > FORMAT_VERSION:
        f.close()
        raise LandscapeError(f"{path}: trajectory format version {version} is newer than this "
                             f"landscape ({FORMAT_VERSION}); upgrade landscape")
    return f


def atomic_create(path: str, overwrite: bool, build) -> None:
    """Create ``path`` by ``build(h5file)`` on a temporary file, then rename it into place, so a
    failure never leaves a half-written file nor destroys an existing one."""
    if os.path.exists(path) and not overwrite:
        raise LandscapeError(f"{path} already exists: pass --resume to continue it or "
                             f"--overwrite to replace it")

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            build(f)
    atomic_write(path, write, suffix=".h5")


def _write_state(group: h5py.Group, state: dict, compress: bool) -> None:
    opts = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if compress else {}
    for name, tensor in state.items():
        arr = tensor.detach().cpu().numpy()
        group.create_dataset(name, data=arr, **(opts if arr.size > 1 else {}))


def _read_state(group: h5py.Group) -> dict:
    return {name: torch.from_numpy(np.asarray(ds[()])) for name, ds in group.items()}


def write_header(f: h5py.File, *, config: dict, model_spec: dict, group_names: list[str],
                 kind: str, epochs_complete: int = 0) -> None:
    """Root attributes and empty groups shared by every kind of trajectory."""
    from . import __version__
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


class TrajectoryWriter:
    """Appends one epoch at a time and commits it with the ``epochs_complete`` marker."""

    def __init__(self, path: str):
        self.path = path
        with self._open() as f:
            self._discard_uncommitted(f)

    @contextlib.contextmanager
    def _open(self):
        """The file is open only while an epoch is written: between epochs it is closed and
        consistent on disk, so a kill at almost any moment leaves a readable trajectory."""
        f = open_h5(self.path, "a")
        try:
            yield f
        finally:
            f.close()

    @staticmethod
    def create(path: str, *, config: dict, model_spec: dict, group_names: list[str],
               initial_state: dict, data_arrays: dict, kind: str = "train",
               overwrite: bool = False) -> "TrajectoryWriter":
        def build(f):
            write_header(f, config=config, model_spec=model_spec, group_names=group_names, kind=kind)
            for name, arr in data_arrays.items():
                if arr is not None:
                    f.create_dataset(f"data/{name}", data=np.asarray(arr))
            ck = f.create_group(f"checkpoints/{_key(0)}")
            ck.attrs["epoch"] = 0
            _write_state(ck, initial_state, compress=True)
            st = f.create_group(f"state/{_key(0)}")
            st.attrs["epoch"] = 0
            _write_state(st, initial_state, compress=False)

        atomic_create(path, overwrite, build)
        return TrajectoryWriter(path)

    @property
    def epochs_complete(self) -> int:
        with self._open() as f:
            return int(f.attrs["epochs_complete"])

    def attr(self, name: str):
        with self._open() as f:
            value = f.attrs[name]
        return value.decode() if isinstance(value, bytes) else value

    @staticmethod
    def _discard_uncommitted(f) -> None:
        """Drop whatever a killed run wrote past the last committed epoch."""
        done = int(f.attrs["epochs_complete"])
        for parent in ("metrics", "metrics/groups", "timing"):
            for ds in f.get(parent, {}).values():
                if isinstance(ds, h5py.Dataset) and ds.shape[0] > done:
                    ds.resize(done, axis=0)
        for grp in ("checkpoints", "state"):
            for key in list(f.get(grp, {}).keys()):
                if int(key) > done:
                    del f[f"{grp}/{key}"]

    def latest_state(self) -> tuple[int, dict]:
        with self._open() as f:
            done = int(f.attrs["epochs_complete"])
            if f"state/{_key(done)}" not in f:
                raise LandscapeError(f"{self.path}: no model state for epoch {done}; the file is "
                                     f"damaged and cannot be resumed")
            return done, _read_state(f[f"state/{_key(done)}"])

    @staticmethod
    def _append(f, name: str, row) -> None:
        row = np.asarray(row, dtype=np.float64)
        if name not in f:
            f.create_dataset(name, shape=(0,) + row.shape, maxshape=(None,) + row.shape,
                             dtype=np.float64, chunks=(64,) + row.shape)
        ds = f[name]
        ds.resize(ds.shape[0] + 1, axis=0)
        ds[-1] = row

    def append_epoch(self, epoch: int, metrics: dict, group_metrics: dict, state: dict,
                     checkpoint: bool, seconds: float = float("nan")) -> None:
        with self._open() as f:
            assert epoch == int(f.attrs["epochs_complete"]) + 1, "epochs are appended in order"
            self._append(f, "metrics/epoch", epoch)
            for name, value in metrics.items():
                self._append(f, f"metrics/{name}", value)
            for name, row in group_metrics.items():
                self._append(f, f"metrics/groups/{name}", row)
            self._append(f, "timing/epoch_seconds", seconds)
            if checkpoint:
                ck = f.create_group(f"checkpoints/{_key(epoch)}")
                ck.attrs["epoch"] = epoch
                _write_state(ck, state, compress=True)
            st = f.create_group(f"state/{_key(epoch)}")
            st.attrs["epoch"] = epoch
            _write_state(st, state, compress=False)
            f.attrs["epochs_complete"] = epoch  # the commit
            del f[f"state/{_key(epoch - 1)}"]

    def set_attr(self, name: str, value) -> None:
        with self._open() as f:
            f.attrs[name] = value

    def close(self) -> None:
        """Nothing stays open between epochs; kept so callers can close symmetrically."""


class Trajectory:
    """Read access to a trajectory: config, metrics as numpy arrays, checkpoints, models.

    >>> t = Trajectory("traj.h5")
    >>> t.metrics["train_loss"], t.group_metrics["elr"], t.checkpoint_epochs
    >>> model = t.load_model(t.checkpoint_epochs[-1])
    """

    def __init__(self, path: str):
        self.path = path
        with open_h5(path) as f:
            try:
                self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
                self.config = json.loads(self.attrs["config"])
                self.model_spec = json.loads(self.attrs["model_spec"])
                self.group_names = json.loads(self.attrs["group_names"])
                self.kind = str(self.attrs.get("kind", "train"))
                done = int(self.attrs["epochs_complete"])
                self.metrics = {n: ds[:done] for n, ds in f["metrics"].items()
                                if isinstance(ds, h5py.Dataset)}
                self.group_metrics = {n: ds[:done] for n, ds in f["metrics/groups"].items()}
                self.checkpoint_epochs = sorted(int(k) for k in f["checkpoints"].keys()
                                                if int(k) <= done)
                self.data = {n: ds[()] for n, ds in f.get("data", {}).items()}
                self.timing = {n: ds[:done] for n, ds in f.get("timing", {}).items()}
                self.analyses = list(f.get("analyses", {}).keys())
            except (KeyError, ValueError, OSError) as e:
                raise LandscapeError(f"{path}: damaged trajectory ({e}); it cannot be read") from None
        self.epochs_complete = done

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
        with open_h5(self.path) as f:
            return _read_state(f[f"checkpoints/{_key(epoch)}"])

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
        from .models import build_model
        model = build_model(self.model_spec, self.config.get("init_seed", 0))
        model.load_state_dict(self.state_dict(epoch))
        return model.to(device)


def _compact(epochs: list[int]) -> str:
    if len(epochs) <= 8:
        return ", ".join(map(str, epochs))
    return ", ".join(map(str, epochs[:4])) + ", ..., " + ", ".join(map(str, epochs[-3:]))


CHECKPOINT_FORMAT = "landscape-checkpoint"


def export_checkpoint(traj_path: str, epoch: int | None, out: str, overwrite: bool = False) -> dict:
    """Write a self-describing ``.pt`` (state dict, model spec, config, SI group names) of one
    stored epoch, atomically. Returns what was written."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION,
               **Trajectory(traj_path).checkpoint(epoch), "source": os.path.abspath(traj_path)}
    if os.path.exists(out) and not overwrite:
        raise LandscapeError(f"{out} already exists: pass --overwrite to replace it")
    atomic_write(out, lambda tmp: torch.save(payload, tmp), suffix=".pt")
    return payload


def load_checkpoint(path: str) -> dict:
    """Read a ``.pt`` written by ``export_checkpoint`` (checked, one-line errors)."""
    if not os.path.exists(path):
        raise LandscapeError(f"{path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign or damaged files
        raise LandscapeError(f"{path}: not a readable checkpoint ({e.__class__.__name__}); "
                             f"write one with 'landscape export'") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise LandscapeError(f"{path}: not a landscape checkpoint; write one with 'landscape export'")
    return payload


def load_point(source: str, device="cpu") -> tuple[torch.nn.Module, dict]:
    """A model from ``a.pt`` or ``traj.h5@EPOCH`` (``traj.h5`` alone: its last checkpoint),
    with its description (model_spec, config, si_group_names, epoch, source)."""
    from .models import build_model
    path, epoch = parse_source(source)
    if path.endswith(".pt"):
        if epoch is not None:
            raise LandscapeError(f"{source}: '@EPOCH' applies to trajectories, not .pt files")
        meta = load_checkpoint(path)
    else:
        meta = {**Trajectory(path).checkpoint(epoch), "source": path}
    model = build_model(meta["model_spec"], meta["config"].get("init_seed", 0))
    model.load_state_dict(meta["state_dict"])
    return model.to(device), meta


def select_epochs(traj: "Trajectory", spec: str) -> list[int]:
    """Checkpoint epochs from 'last', 'all', '10,50,100' or 'every:K'."""
    stored = traj.checkpoint_epochs
    if not stored:
        raise LandscapeError(f"{traj.path}: holds no checkpoint")
    spec = str(spec).strip()
    if spec == "last":
        return [stored[-1]]
    if spec == "all":
        return list(stored)
    if spec.startswith("every:"):
        try:
            k = int(spec[6:])
            assert k > 0
        except (ValueError, AssertionError):
            raise LandscapeError(f"--epochs {spec}: write every:K with a positive integer K") from None
        return [e for e in stored if e % k == 0] or [stored[-1]]
    try:
        wanted = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise LandscapeError(f"--epochs {spec!r}: use last, all, every:K or a list like 10,50,100") from None
    return [traj.resolve_epoch(e) for e in wanted]


def append_analysis(path: str, name: str, arrays: dict, attrs: dict) -> None:
    """Store an analysis under /analyses/<name>, replacing only that group. Everything is
    computed before this is called; the file is touched only here, and the new group is written
    beside the old one and swapped in, so an interruption leaves the previous results whole."""
    with open_h5(path, "a") as f:
        tmp = f"analyses/.{name}.tmp"
        if tmp in f:
            del f[tmp]
        g = f.create_group(tmp)
        for k, v in arrays.items():
            g.create_dataset(k, data=np.asarray(v))
        for k, v in attrs.items():
            g.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
        if f"analyses/{name}" in f:
            del f[f"analyses/{name}"]
        f.move(tmp, f"analyses/{name}")


def read_analysis(path: str, name: str) -> tuple[dict, dict]:
    with open_h5(path) as f:
        if f"analyses/{name}" not in f:
            raise LandscapeError(f"{path}: no /analyses/{name}; run 'landscape {name} {path}' first")
        g = f[f"analyses/{name}"]
        return {k: ds[()] for k, ds in g.items()}, dict(g.attrs)
