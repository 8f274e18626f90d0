"""A trajectory's integrity: ``verify`` reads every byte HDF5 checksums (Fletcher-32 on every
non-scalar dataset), ``repair`` copies what can still be read of a damaged file into a new one.

>>> report = verify("traj.h5")           # {'datasets': ..., 'corrupt': [...], 'unchecked': ...}
>>> repair("broken.h5", "fixed.h5")      # {'epochs_complete': ..., 'dropped': [...], ...}
"""
from __future__ import annotations

import os

import h5py

from .errors import LandscapeError
from .files import atomic_write, refuse_input_as_output
from .trajectory import (CREATE_OPTIONS, FORMAT_VERSION, SLOTS, Corrupt, _create_slots, _key, _read_state,
                         _write_state, checksummed, intact_rows, open_h5, read_dataset, read_h5)


def verify(path: str) -> dict:
    """Read every dataset of ``path`` whole: {'datasets': how many, 'bytes': their stored size,
    'corrupt': [where a checksum failed or a read broke], 'unchecked': datasets without a
    checksum (scalars, and everything in files written before checksums)}."""
    report = {"datasets": 0, "bytes": 0, "corrupt": [], "unchecked": 0}

    def read(f):
        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            report["datasets"] += 1
            report["bytes"] += int(obj.id.get_storage_size())
            report["unchecked"] += not obj.fletcher32
            try:
                read_dataset(obj, obj.shape[0] if obj.maxshape and obj.maxshape[0] is None else None)
            except Corrupt as e:
                report["corrupt"].append(e.where)
            except (OSError, RuntimeError, ValueError) as e:
                report["corrupt"].append(f"/{name} ({e})")
        f.visititems(visit)
    read_h5(path, read)
    return report


def _state(group: h5py.Group) -> dict | None:
    """A state group's tensors, or None if any of them cannot be read."""
    try:
        return _read_state(group)
    except (Corrupt, OSError, RuntimeError, ValueError):
        return None


def repair(path: str, out: str, overwrite: bool = False) -> dict:
    """Copy every epoch of ``path`` that can still be read into a new trajectory ``out`` (never
    in place): the per-epoch rows up to the first damaged epoch of any of them, the intact
    checkpoints up to there, and the resume state when it is intact and of the last kept epoch
    (else the file is kept readable but cannot be resumed). Returns {'epochs_complete', 'was',
    'dropped': [what was left out, and why], 'resumable'}."""
    refuse_input_as_output(out, path)
    if os.path.exists(out) and not overwrite:
        raise LandscapeError(f"{out} already exists: pass overwrite to replace it", "overwrite")
    report = {"dropped": []}
    dropped = report["dropped"]

    def copy(tmp):
        with open_h5(path) as src, h5py.File(tmp, "w", **CREATE_OPTIONS) as dst:
            try:
                was = int(src.attrs["epochs_complete"])
            except (KeyError, ValueError, OSError) as e:
                raise LandscapeError(f"{path}: no commit marker ({e}); nothing can be repaired") from None
            rows = {}
            for parent in ("metrics", "timing"):
                if parent in src:
                    src[parent].visititems(lambda n, o, p=parent: rows.__setitem__(f"{p}/{n}", o)
                                           if isinstance(o, h5py.Dataset) else None)
            done = was
            for name, ds in rows.items():
                readable = intact_rows(ds, was)
                if readable < done:
                    dropped.append(f"epochs {readable + 1}-{was}: /{name} is damaged from epoch {readable + 1}")
                    done = readable
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            dst.attrs["format_version"] = FORMAT_VERSION
            for name, ds in rows.items():
                data = ds[:done]
                dst.create_dataset(name, data=data, maxshape=(None,) + ds.shape[1:],
                                   chunks=ds.chunks or True, fletcher32=True)
            for key, value in src["metrics"].attrs.items() if "metrics" in src else ():
                dst["metrics"].attrs[key] = value
            if "metrics/groups" in src:
                for key, value in src["metrics/groups"].attrs.items():
                    dst.require_group("metrics/groups").attrs[key] = value
            for top in ("filters", "data", "initial", "analyses"):
                if top not in src:
                    continue

                def copy_dataset(name, obj, top=top):
                    if isinstance(obj, h5py.Dataset):
                        try:
                            checksummed(dst, f"{top}/{name}", read_dataset(obj))
                        except (Corrupt, OSError, RuntimeError, ValueError):
                            dropped.append(f"/{top}/{name}: damaged")
                    elif isinstance(obj, h5py.Group):
                        g = dst.require_group(f"{top}/{name}")
                        for key, value in obj.attrs.items():
                            g.attrs[key] = value
                src[top].visititems(copy_dataset)
            dst.require_group("checkpoints")
            for key in sorted(src.get("checkpoints", {}).keys()):
                epoch = int(key)
                if epoch > done:
                    if epoch <= was:
                        dropped.append(f"checkpoint {epoch}: after the last intact epoch")
                    continue
                state = _state(src[f"checkpoints/{key}"])
                if state is None:
                    dropped.append(f"checkpoint {epoch}: damaged")
                    continue
                g = dst.create_group(f"checkpoints/{key}")
                g.attrs["epoch"] = epoch
                _write_state(g, state)
            resume = None
            for slot in SLOTS:
                if slot in src and int(src[slot].attrs.get("epoch", -1)) == done:
                    resume = _state(src[slot])
            if resume is None and done == 0 and f"checkpoints/{_key(0)}" in dst and \
                    src.attrs.get("kind", "train") == "train":
                resume = _state(dst[f"checkpoints/{_key(0)}"])
            if resume is not None:
                _create_slots(dst, resume, done)
            elif "state" in src:
                dropped.append(f"the resume state of epoch {done}: damaged or gone (the file reads, "
                               f"but cannot be resumed)")
            dst.attrs["epochs_complete"] = done
            report.update(epochs_complete=done, was=was, resumable=resume is not None)

    read_h5(path, lambda f: None)  # the same one-line verdict as every reader on foreign files
    atomic_write(out, copy, suffix=".h5")
    return report
