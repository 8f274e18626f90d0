"""Points of a run that the analyses take as inputs: a checkpoint of a trajectory
(``traj.h5@EPOCH``, ``traj.h5`` alone meaning its last), an exported ``.pt`` file, and the
selection of several checkpoints ('last', 'all', '10,50', 'every:K').

    >>> parse_source("runs/t.h5@50")
    ('runs/t.h5', 50)
"""
from __future__ import annotations

import io
import os

import torch

from .errors import ArgumentError, LandscapeError
from .files import atomic_write, refuse_input_as_output
from .trajectory import FORMAT_VERSION, Trajectory, rebuild_model


def parse_source(source: str) -> tuple[str, int | None]:
    """``traj.h5@EPOCH`` -> (path, epoch); ``traj.h5`` -> (path, None); EPOCH may be 'last'. A
    file whose own name holds an '@' ('a@b.h5') is that file."""
    path, sep, epoch = source.rpartition("@")
    if not sep or os.path.exists(source):
        return source, None
    if epoch == "last":
        return path, -1
    try:
        return path, int(epoch)
    except ValueError:
        raise LandscapeError(f"bad epoch in {source!r}: write PATH@EPOCH with an integer epoch "
                             f"or 'last'") from None


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
            raise ArgumentError(f"epochs {spec}: write every:K with a positive integer K", "epochs") from None
        return [e for e in stored if e % k == 0] or [stored[-1]]
    try:
        wanted = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ArgumentError(f"epochs {spec!r}: use last, all, every:K or a list like 10,50,100", "epochs") from None
    return [traj.resolve_epoch(e) for e in wanted]


CHECKPOINT_FORMAT = "landscape-checkpoint"


def export_checkpoint(traj_path: str, epoch: int | None, out: str, overwrite: bool = False) -> dict:
    """Write a self-describing ``.pt`` (state dict, model spec, config, SI group names) of one
    stored epoch, atomically. Returns what was written."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION,
               **Trajectory(traj_path).checkpoint(epoch), "source": os.path.abspath(traj_path)}
    refuse_input_as_output(out, traj_path)
    if os.path.exists(out) and not overwrite:
        raise ArgumentError(f"{out} already exists: pass overwrite to replace it", "overwrite")
    buffer = io.BytesIO()  # serialised first: a full disk is then an OSError of a plain write
    torch.save(payload, buffer)
    atomic_write(out, lambda tmp: open(tmp, "wb").write(buffer.getbuffer()), suffix=".pt")
    return payload


def load_checkpoint(path: str) -> dict:
    """Read a ``.pt`` written by ``export_checkpoint`` (checked, one-line errors)."""
    if not os.path.exists(path):
        raise LandscapeError(f"{path}: no such file")
    import warnings
    try:
        with warnings.catch_warnings():  # torch's own warnings about the file: our line says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign or damaged files
        raise LandscapeError(f"{path}: not a readable checkpoint ({e.__class__.__name__}; files holding "
                             f"pickled objects are refused); write one with 'landscape export'") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise LandscapeError(f"{path}: not a landscape checkpoint; write one with 'landscape export'")
    for key, kind in (("model_spec", dict), ("config", dict), ("state_dict", dict)):
        if not isinstance(payload.get(key), kind):
            raise LandscapeError(f"{path}: a landscape checkpoint without its {key}; write it again with "
                                 f"'landscape export'")
    if not all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values()):
        raise LandscapeError(f"{path}: its state_dict holds values that are not tensors")
    return payload


def load_point(source: str, device="cpu") -> tuple[torch.nn.Module, dict]:
    """A model from ``a.pt`` or ``traj.h5@EPOCH`` (``traj.h5`` alone: its last checkpoint),
    with its description (model_spec, config, si_group_names, epoch, source)."""
    path, epoch = parse_source(source)
    if path.endswith(".pt"):
        if epoch is not None:
            raise LandscapeError(f"{source}: '@EPOCH' applies to trajectories, not .pt files")
        meta = load_checkpoint(path)
    else:
        meta = {**Trajectory(path).checkpoint(epoch), "source": path}
    try:
        model = rebuild_model(meta["model_spec"], meta["config"], meta["state_dict"], device)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, LandscapeError):
            raise
        detail = " ".join(str(e).split()) or e.__class__.__name__
        raise LandscapeError(f"{source}: its weights do not fit its model_spec ({detail[:240]})") from None
    return model, meta
