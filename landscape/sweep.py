"""``landscape sweep``: many ELRs from one initialisation and batch order (paper Section 4).

Each ELR gets an ordinary trajectory ``OUT/elr<ELR>.h5`` (read by every analysis) and the sweep an
index ``OUT/sweep.json`` (ELRs, files, status). The runs are trained by one of three strategies,
with one result:
    processes   worker processes (fresh interpreters), one thread each, each training its share
                of the runs one after another (``executors.run_processes``; faster on a small
                CPU: see benchmarks/RESULTS.md); on a GPU, several processes share it;
    streams     the models one after another in this process on the same batches, each on its
                own CUDA stream (``steppers.Streams``); bit-identical to single runs;
    vectorised  the models as one stacked model under ``vmap`` (``steppers.Vectorised``);
or by a cluster engine (``executor`` 'ray' or 'slurm', ``executors``). ``auto`` takes processes
on a CPU (measured faster there) and, on a GPU, the strategy that trains these models fastest on
this GPU, timed on a short probe (``probe_strategies``); the index keeps the probe's figures, and
a re-run keeps its choice. Re-running the same command continues an interrupted sweep: finished
runs are kept, the others resume from their last committed epoch.

    >>> parse_rates("1e-3:1e-2")
    [0.001, 0.002, 0.005, 0.01]
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from .config import HOW_SETTINGS, TrainConfig
from .data import resolve_device
from .errors import ArgumentError, LandscapeError
from .executors import EXECUTORS, parse_shard, run_processes, run_ray, run_slurm
from .files import write_json
from .locks import WriterLock
from .progress import Progress
from .run import close_run, load_training_data, open_run_mirrors, prepare_run, train_runs
from .steppers import STEPPERS
from .trajectory import Trajectory
import shutil
import tempfile

STRATEGIES = ("auto", "vectorised", "streams", "processes")
PROBED = ("vectorised", "streams", "processes")  # what auto times on a GPU
INDEX = "sweep.json"
FINISHED = ("done", "nonfinite")  # statuses a re-run leaves alone


def parse_rates(text: str) -> list[float]:
    """'0.001,0.002' (a list); '1e-7:1' ({1, 2, 5} x 10^k within the range); '1e-4:1e-2:12'
    (12 log-spaced values, both ends included); grids joined by '+' are merged, sorted, each value
    once ('1e-5:0.1+3e-3,7e-3': the {1,2,5} grid refined near a boundary)."""
    text = str(text).strip()
    if "+" in text.replace("e+", "e"):
        parts = text.replace("e+", "e").split("+")
        if any(not part.strip() for part in parts):
            raise ArgumentError(f"bad ELR grid {text!r}: an empty grid around '+'", "elrs")
        return sorted({float(f"{v:.12g}") for part in parts for v in parse_rates(part)})
    bad = ArgumentError(f"bad ELR grid {text!r}: write a list (0.001,0.002), a {{1,2,5}}x10^k "
                         f"range (1e-7:1) or LO:HI:N for N log-spaced values", "elrs")
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (2, 3):
                raise bad
            lo, hi = float(parts[0]), float(parts[1])
            if not (0 < lo <= hi and math.isfinite(hi)):
                raise bad
            if len(parts) == 3:
                n = int(parts[2])
                if n < 1:
                    raise bad
                values = [lo] if n == 1 else list(np.geomspace(lo, hi, n))
            else:
                values = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1,
                                                       math.ceil(math.log10(hi)) + 1)
                          for m in (1, 2, 5)]
                values = [float(f"{v:.6g}") for v in values if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise bad from None
    if not values:
        raise ArgumentError(f"ELR grid {text!r} is empty", "elrs")
    if any(not (v > 0 and math.isfinite(v)) for v in values):
        raise ArgumentError(f"ELR grid {text!r}: every ELR must be a positive number", "elrs")
    if len(set(values)) != len(values):
        raise ArgumentError(f"ELR grid {text!r} repeats a value", "elrs")
    return [float(v) for v in values]


def run_status(path: str, epochs: int) -> tuple[str, int]:
    """(pending | partial | done | nonfinite | damaged, epochs committed) of one run's file."""
    if not os.path.exists(path):
        return "pending", 0
    try:
        t = Trajectory(path)
    except LandscapeError:
        return "damaged", 0
    if t.status == "nonfinite":
        return "nonfinite", t.epochs_complete
    done = t.epochs_complete
    return ("done" if done >= epochs else "partial"), done


def sweep(elrs, out_dir: str, config: TrainConfig | dict | None = None, *, strategy: str = "auto",
          chunk: int | None = None, workers: int | None = None, progress: bool | None = None,
          executor: str = "local", executor_options: dict | None = None, shard: str | None = None,
          log=None, log_dir: str | None = None, **overrides) -> dict:
    """Train one run per ELR (space 'whole': per LR, the same grid grammar, ``parse_rates``)
    into ``out_dir``; returns the sweep index. ``executor``: 'local' (the ``strategy`` on this
    machine), 'ray' or 'slurm' (``executor_options``: see ``executors.run_ray`` /
    ``run_slurm``); ``shard`` 'I/N' or 'slurm': train only every N-th run from the I-th, so that
    job arrays, Hydra or W&B agents can share one folder. ``chunk``: the in-process strategies
    train this many models at a time; ``workers``: the processes strategy's worker count."""
    if executor not in EXECUTORS:
        raise ArgumentError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}", "executor")
    shard_of = parse_shard(shard)
    if isinstance(elrs, str):
        elrs = parse_rates(elrs)
    if strategy not in STRATEGIES:
        raise ArgumentError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}", "strategy")
    if chunk is not None and chunk < 1:
        raise ArgumentError(f"chunk must be positive, got {chunk}", "chunk")
    if isinstance(config, dict):
        config = TrainConfig.from_settings(config)
    base = dataclasses.replace(config or TrainConfig(), **overrides)
    if base.space == "whole":
        base.lr = elrs[0]  # every run's own LR is set below
    base.validate()
    if strategy == "vectorised" and base.channels_last:
        raise ArgumentError("channels_last: vmap folds the models into the channels, so vectorised "
                            "sweeps cannot keep the layout; use strategy streams or processes (or "
                            "auto)", "channels_last", "strategy")
    os.makedirs(out_dir, exist_ok=True)
    if log:
        from .trackers import parse_trackers
        log = parse_trackers(log)
    plan = SweepPlan(elrs, out_dir, base, strategy, executor, resolve_device(base.device), chunk,
                     workers, executor_options or {}, shard_of, {"log": log, "log_dir": log_dir})
    if shard_of is not None:  # shards share the folder: the index lock only around its writes
        return plan.run(progress)
    # one sweep per folder at a time: a second one is refused with the first one's details
    with WriterLock(plan.index_path, f"sweep {out_dir}"):
        return plan.run(progress)


def run_file(out_dir: str, value: float, name: str = "elr") -> str:
    """OUT/elr<ELR>.h5 on the sphere, OUT/lr<LR>.h5 in the whole space."""
    return os.path.join(out_dir, f"{name}{value:g}.h5")


@dataclasses.dataclass
class SweepPlan:
    """One call of ``sweep``: which runs, where, how; ``run`` trains the unfinished ones."""
    elrs: list
    out_dir: str
    base: TrainConfig
    strategy: str
    executor: str
    device: object
    chunk: int | None
    workers: int | None
    options: dict
    shard: tuple | None
    logs: dict

    @property
    def index_path(self) -> str:
        return os.path.join(self.out_dir, INDEX)

    @property
    def shared(self) -> dict:
        """The settings every run shares (the index's ``config``)."""
        return {k: v for k, v in dataclasses.asdict(self.base).items() if k not in ("elr", "lr", "device")}

    def update_index(self, update) -> None:
        """Read-modify-write of sweep.json; a shard waits its turn for the folder's lock."""
        if self.shard is None:
            return update()
        lock = WriterLock(self.index_path, "sweep shard: updating sweep.json").acquire(wait=120)
        try:
            return update()
        finally:
            lock.release()

    @staticmethod
    def comparable(config: dict) -> dict:
        """A sweep's shared settings as a stored configuration means them (``TrainConfig.from_dict``),
        without the swept rate and ``HOW_SETTINGS``: what is trained, not how it is computed."""
        full = dataclasses.asdict(TrainConfig.from_dict(config))
        return {k: v for k, v in full.items() if k not in ("elr", "lr") + HOW_SETTINGS}

    def check_index(self) -> None:
        """Refuse a folder that holds a sweep with other settings."""
        if not os.path.exists(self.index_path):
            return
        try:
            old = json.load(open(self.index_path))
        except (OSError, ValueError):
            raise LandscapeError(f"{self.index_path} is damaged: remove it to start the sweep afresh") from None
        # both read as a run's configuration is read (options added since filled as they were
        # then, or with their defaults), so a sweep made before an option existed continues
        stored, shared = self.comparable(old.get("config", {})), self.comparable(self.shared)
        before, now = stored.pop("epochs"), shared.pop("epochs")  # more epochs extend the sweep
        if now < before:
            raise LandscapeError(f"{self.out_dir} holds a sweep of {before} epochs: epochs {now} would end it "
                                 f"before them (give {before} or more to continue or extend it)", "epochs")
        if now > before and shared.get("schedule") != "constant":
            raise LandscapeError(f"{self.out_dir}: a {shared.get('schedule')} schedule depends on the run's "
                                 f"length, so its runs cannot be extended from {before} to {now} epochs; "
                                 f"train a new sweep", "epochs")
        if stored != shared:
            diff = sorted(k for k in set(shared) | set(stored) if shared.get(k) != stored.get(k))
            raise LandscapeError(f"{self.out_dir} holds a sweep with other settings ({', '.join(diff)} "
                                 f"differ): pick another output folder or repeat its command to continue it")

    def run(self, progress) -> dict:
        base, field = self.base, "lr" if self.base.space == "whole" else "elr"  # the swept setting
        files = [run_file(self.out_dir, e, field) for e in self.elrs]
        status = [run_status(f, base.epochs) for f in files]  # (state, epochs done), read once
        todo = [(e, f) for i, (e, f, (st, _)) in enumerate(zip(self.elrs, files, status))
                if st not in FINISHED and (self.shard is None or i % self.shard[1] == self.shard[0])]
        probe = None
        if self.strategy == "auto" and self.executor == "local":
            self.strategy, probe = self.auto_strategy([e for e, _ in todo])
        index = {"format": "landscape-sweep", "config": self.shared, "strategy": self.strategy,
                 "executor": self.executor,
                 "runs": [{field: e, "file": os.path.basename(f), "status": st}
                          for e, f, (st, _) in zip(self.elrs, files, status)]}
        if probe is not None:
            index["strategy_probe"] = probe
        self.update_index(lambda: (self.check_index(), write_json(self.index_path, index)))
        damaged = [f for f, (st, _) in zip(files, status) if st == "damaged"]
        if damaged:
            raise LandscapeError(f"{', '.join(damaged)}: damaged, cannot be resumed: move "
                                 f"{'it' if len(damaged) == 1 else 'them'} away to train afresh")
        done_epochs = sum(base.epochs if st in FINISHED else done for st, done in status)
        report = SweepProgress(len(self.elrs), base.epochs, done_epochs,
                               sum(st in FINISHED for st, _ in status), progress)
        placed = {}
        try:
            if todo:
                placed = self.train([dataclasses.replace(base, **{field: e}) for e, _ in todo],
                                    [f for _, f in todo], report)
        finally:
            report.close()
            self.update_index(lambda: self.write_final_index(index, placed))
        failed = [f"{os.path.basename(r['file'])}: {r.get('error')}" for r in placed.values()
                  if r["status"] == "failed"]
        if failed:
            raise LandscapeError("some runs failed (re-run the command to continue them): " + "; ".join(failed))
        return index

    def train(self, cfgs, outs, report) -> dict:
        """Train the runs by the executor or strategy; {file: where it ran} for cluster runs."""
        if self.executor == "ray":
            return {r["file"]: r for r in run_ray(cfgs, outs, report, logs=self.logs, **self.options)}
        if self.executor == "slurm":
            folder = os.path.join(self.out_dir, ".submitit")
            return {r["file"]: r for r in run_slurm(cfgs, outs, report, folder, logs=self.logs, **self.options)}
        if self.strategy == "processes":
            run_processes(cfgs, outs, self.workers, report, self.out_dir, self.logs)
        else:
            train_in_process(cfgs, outs, self.chunk, report, self.logs, STEPPERS[self.strategy])
        return {}

    def write_final_index(self, index: dict, placed: dict) -> None:
        for run in index["runs"]:
            path = os.path.join(self.out_dir, run["file"])
            run["status"] = run_status(path, self.base.epochs)[0]
            if path in placed:  # where it ran (host, pid, Slurm job) and any error
                run["ran_on"] = {k: v for k, v in placed[path].items() if k not in ("file", "status", "epochs")}
        write_json(self.index_path, index)

    def auto_strategy(self, values) -> tuple[str, dict | None]:
        """processes on a CPU; on a GPU the strategy an earlier call of this sweep chose (so a
        resumed sweep trains on as it began), else the fastest of ``PROBED`` on a short probe."""
        if self.device.type != "cuda":
            return "processes", None
        try:
            old = json.load(open(self.index_path))
            if old.get("strategy") in STRATEGIES[1:]:
                return old["strategy"], old.get("strategy_probe")
        except (OSError, ValueError):
            pass
        if len(values) < 2:
            return "streams", None  # one model: nothing to batch or share
        candidates = [s for s in PROBED if not (s == "vectorised" and self.base.channels_last)]
        probe = probe_strategies(self.base, values[:self.chunk or len(values)], candidates, workers=self.workers)
        return probe["chosen"], probe


def train_in_process(cfgs, outs, chunk, report, logs, stepper) -> None:
    """Chunks of runs prepared in this process and trained together by the epoch loop with
    ``stepper`` (``steppers.Streams`` or ``steppers.Vectorised``); runs left at different
    epochs by an interruption train in groups of equal start."""
    chunk = chunk or len(cfgs)
    data = load_training_data(cfgs[0])
    for i in range(0, len(cfgs), chunk):
        runs = []
        try:
            for cfg, out in zip(cfgs[i:i + chunk], outs[i:i + chunk]):
                runs.append(prepare_run(cfg, out, data, resume=os.path.exists(out)))
                open_run_mirrors(runs[-1], logs.get("log"), logs.get("log_dir"))
            for start in sorted({r.start for r in runs}):
                group = [r for r in runs if r.start == start]
                train_runs(group, data, stepper(group, data), report)
        finally:
            for r in runs:
                close_run(r)


class SweepProgress:
    """One display for the whole sweep: epochs done over all runs, and runs finished."""

    def __init__(self, runs: int, epochs: int, done_epochs: int, finished: int, progress):
        self.runs, self.epochs, self.finished = runs, epochs, finished
        self._seen = {}
        self.reporter = Progress(runs * epochs, "sweep", "epoch", progress, initial=done_epochs)

    def update(self, out: str, epoch: int, metrics: dict) -> None:
        self.finished += epoch == self.epochs
        line = (f"{os.path.basename(out)} epoch {epoch}/{self.epochs}  train loss {metrics['train_loss']:.4f}  "
                f"runs finished {self.finished}/{self.runs}")
        self.reporter.update(line=line, postfix=line)

    def ended(self, out: str, message: str) -> None:
        """A run that stopped early (non-finite values): finished, with its reason shown."""
        self.finished += 1
        self.reporter.note(f"{os.path.basename(out)}: {message}")

    def run_finished(self, out: str, result: dict) -> None:
        """A run trained elsewhere (a Ray or Slurm task) has returned: its epochs at once."""
        try:
            done = Trajectory(out).epochs_complete
        except LandscapeError:
            done = 0
        self.finished += result["status"] != "failed"
        line = (f"{os.path.basename(out)}: {result['status']} ({done}/{self.epochs} epochs) on "
                f"{result.get('host', '?')}  runs finished {self.finished}/{self.runs}")
        self.reporter.update(n=max(0, done - self._seen.get(out, 0)), line=line, postfix=line)
        self._seen[out] = done

    def close(self) -> None:
        self.reporter.close()


# --- auto: a probe of the strategies on this GPU ----------------------------------------

def probe_strategies(base: TrainConfig, values, strategies=PROBED, batches: int = 20, workers: int | None = None,
                     progress=False) -> dict:
    """Time each strategy on these models and this device: a throw-away sweep of 3 epochs of
    ``batches`` batches (the real code path, into a temporary folder), read from the second
    epoch's wall times (warm: cuDNN autotuned, compiled; interpreter start-ups excluded). The
    in-process strategies record each model's share of an epoch, so their throughput is N images
    over the shares' sum; processes run concurrently, each worker its round-robin share in
    turn, so theirs is the sum over workers of their images over their time. Returns
    ``{"images_per_second": {strategy: aggregate rate}, "chosen": the fastest, "models": N,
    "batches": B}``."""
    available = base.train_subset or len(load_training_data(base).y_train)
    subset = min(batches * base.batch_size, available)
    images_per_second = {}
    for strategy in strategies:
        folder = tempfile.mkdtemp(prefix=".landscape-probe-")
        try:
            cfg = dataclasses.replace(base, epochs=3, eval_every=10 ** 6, save_every=10 ** 6,
                                      checkpoint_metrics=False, train_subset=subset)
            index = sweep(values, folder, cfg, strategy=strategy, workers=workers, progress=progress)
            seconds = [float(Trajectory(os.path.join(folder, r["file"])).timing["epoch_seconds"][1])
                       for r in index["runs"]]
            if strategy == "processes":
                n_workers = max(1, min(len(values), workers or os.cpu_count() or 1))
                images_per_second[strategy] = sum(len(seconds[w::n_workers]) * subset / sum(seconds[w::n_workers])
                                      for w in range(n_workers))
            else:
                images_per_second[strategy] = len(values) * subset / sum(seconds)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {"images_per_second": images_per_second, "chosen": max(images_per_second, key=images_per_second.get), "models": len(values),
            "batches": batches}


