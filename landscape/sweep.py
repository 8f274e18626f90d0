"""``landscape sweep``: many ELRs from one initialisation and batch order (paper Section 4).

Each ELR gets an ordinary trajectory ``OUT/elr<ELR>.h5`` (read by every analysis) and the sweep an
index ``OUT/sweep.json`` (ELRs, files, status). Three strategies, one result:
    processes   worker processes (fresh interpreters), one thread each, each running
                ``landscape.train`` on its share of the ELRs (faster on a small CPU: see
                benchmarks/RESULTS.md); on a GPU, several processes share it;
    vectorised  the N models in one forward/backward: parameters and BN buffers stacked
                (``torch.func.stack_module_state``), ``vmap`` of ``grad`` of ``functional_call``,
                each model with its own ELR and sphere through the one ``projected_sgd_step``
                (``batch_dims=1``); ``--compile`` compiles the vmapped step, ``--precision bf16``
                autocasts it. One small network leaves a GPU mostly idle;
    streams     the N models one after another in one process on the same batches, each on
                its own CUDA stream so that their kernels can overlap (on a CPU: in turn),
                with every speed option a single run has; bit-identical to single runs.
``auto`` takes processes on a CPU (measured faster there) and, on a GPU, the strategy that
trains these models fastest on this GPU, timed on a short probe (``probe_strategies``); the
sweep index keeps the probe's figures, and a re-run keeps its choice.
Re-running the same command continues an interrupted sweep: finished runs are kept, the others
resume from their last committed epoch.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from .errors import LandscapeError
from .locks import WriterLock
from .trajectory import Trajectory
from .progress import Progress
from .trajectory import OPTIMIZER_PREFIX
from .training import (LEGACY, EpochAccumulator, TrainConfig, close_epoch, close_run_mirrors, commit_epoch,
                       compile_options, compiled, compiled_update, end_epoch, end_nonfinite, epoch_lr,
                       float_batchnorm, is_eval_epoch, load_training_data, nonfinite_message, open_run_mirrors,
                       prepare_run, statistics_and_step, step_rates, train, train_step)
from .data import resolve_device, train_batches

STRATEGIES = ("auto", "vectorised", "streams", "processes")
PROBED = ("vectorised", "streams", "processes")  # what auto times on a GPU
INDEX = "sweep.json"


def parse_grid(text: str) -> list[float]:
    """'0.001,0.002' (a list); '1e-7:1' ({1, 2, 5} x 10^k within the range); '1e-4:1e-2:12'
    (12 log-spaced values, both ends included)."""
    text = str(text).strip()
    bad = LandscapeError(f"bad ELR grid {text!r}: write a list (0.001,0.002), a {{1,2,5}}x10^k "
                         f"range (1e-7:1) or LO:HI:N for N log-spaced values")
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
        raise LandscapeError(f"ELR grid {text!r} is empty")
    if any(not (v > 0 and math.isfinite(v)) for v in values):
        raise LandscapeError(f"ELR grid {text!r}: every ELR must be a positive number")
    if len(set(values)) != len(values):
        raise LandscapeError(f"ELR grid {text!r} repeats a value")
    return [float(v) for v in values]


def run_file(out_dir: str, value: float, name: str = "elr") -> str:
    """OUT/elr<ELR>.h5 on the sphere, OUT/lr<LR>.h5 in the whole space."""
    return os.path.join(out_dir, f"{name}{value:g}.h5")


def _write_index(out_dir: str, index: dict) -> None:
    from .files import write_json
    write_json(os.path.join(out_dir, INDEX), index)


FINISHED = ("done", "nonfinite")  # statuses a re-run leaves alone


def _status(path: str, epochs: int) -> tuple[str, int]:
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
    """Train one run per ELR (``--space whole``: per LR, the same grid grammar) into
    ``out_dir``; returns the sweep index. ``executor``: 'local' (the ``strategy`` on this
    machine), 'ray' or 'slurm' (``executor_options``: see ``executors.run_ray`` /
    ``run_slurm``); ``shard`` 'I/N' or 'slurm': train only every N-th run from the I-th, so that
    job arrays, Hydra or W&B agents can share one folder."""
    from .executors import EXECUTORS, parse_shard
    if executor not in EXECUTORS:
        raise LandscapeError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    shard_of = parse_shard(shard)
    if isinstance(elrs, str):
        elrs = parse_grid(elrs)
    if strategy not in STRATEGIES:
        raise LandscapeError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    base = dataclasses.replace(config or TrainConfig(), **overrides)
    if base.space == "whole":
        base.lr = elrs[0]  # every run's own LR is set below
    base.validate()
    device = resolve_device(base.device)
    if strategy == "vectorised" and base.channels_last:
        raise LandscapeError("--channels-last: vmap folds the models into the channels, so the "
                             "vectorised strategy cannot keep the layout; use --strategy streams "
                             "or processes (or auto)")
    shared = {k: v for k, v in dataclasses.asdict(base).items() if k not in ("elr", "lr", "device")}

    os.makedirs(out_dir, exist_ok=True)
    index_path = os.path.join(out_dir, INDEX)
    if log:
        from .trackers import parse_trackers
        log = parse_trackers(log)
    where = {"executor": executor, "strategy": strategy, "device": device, "chunk": chunk, "workers": workers,
             "options": executor_options or {}, "shard": shard_of, "log": log, "log_dir": log_dir}
    if shard_of is not None:  # shards share the folder: the index lock only around its writes
        return _sweep_locked(elrs, out_dir, index_path, base, shared, where, progress, shared_folder=True)
    # one sweep per folder at a time: a second one is refused with the first one's details
    with WriterLock(index_path, f"sweep {out_dir}"):
        return _sweep_locked(elrs, out_dir, index_path, base, shared, where, progress)


def _update_index(index_path: str, update, shared_folder: bool) -> dict:
    """Read-modify-write of sweep.json; a shard waits its turn for the folder's lock."""
    if not shared_folder:
        return update()
    lock = WriterLock(index_path, "sweep shard: updating sweep.json").acquire(wait=120)
    try:
        return update()
    finally:
        lock.release()


def _sweep_locked(elrs, out_dir, index_path, base, shared, where, progress, shared_folder=False) -> dict:
    strategy, chunk, workers = where["strategy"], where["chunk"], where["workers"]
    def check():
        if os.path.exists(index_path):
            try:
                old = json.load(open(index_path))
            except (OSError, ValueError):
                raise LandscapeError(f"{index_path} is damaged: remove it to start the sweep afresh") from None
            stored = {**LEGACY, **old.get("config", {})}  # a sweep begun before an option existed
            if stored != shared:
                diff = sorted(k for k in set(shared) | set(stored) if shared.get(k) != stored.get(k))
                raise LandscapeError(f"{out_dir} holds a sweep with other settings ({', '.join(diff)} "
                                     f"differ): pick another --out or repeat its command to continue it")
    rate = "lr" if base.space == "whole" else "elr"
    files = [run_file(out_dir, e, rate) for e in elrs]
    status = [_status(f, base.epochs) for f in files]  # (state, epochs done), read once
    executor = where["executor"]
    todo = [(e, f) for i, (e, f, (st, _)) in enumerate(zip(elrs, files, status)) if st not in FINISHED
            and (where["shard"] is None or i % where["shard"][1] == where["shard"][0])]
    probe = None
    if strategy == "auto" and executor == "local":
        strategy, probe = _auto_strategy(base, [e for e, _ in todo], index_path, where)
    index = {"format": "landscape-sweep", "config": shared, "strategy": strategy,
             "executor": executor,
             "runs": [{rate: e, "file": os.path.basename(f), "status": st}
                      for e, f, (st, _) in zip(elrs, files, status)]}
    if probe is not None:
        index["strategy_probe"] = probe

    def first_write():
        check()
        _write_index(out_dir, index)
    _update_index(index_path, first_write, shared_folder)

    damaged = [f for f, (st, _) in zip(files, status) if st == "damaged"]
    if damaged:
        raise LandscapeError(f"{', '.join(damaged)}: damaged, cannot be resumed: move "
                             f"{'it' if len(damaged) == 1 else 'them'} away to train afresh")
    done_epochs = sum(base.epochs if st in FINISHED else done for st, done in status)
    finished = sum(st in FINISHED for st, _ in status)
    report = SweepProgress(len(elrs), base.epochs, done_epochs, finished, progress)
    placed = {}
    try:
        if todo:
            cfgs = [dataclasses.replace(base, **{rate: e}) for e, _ in todo]
            outs = [f for _, f in todo]
            options = where["options"]
            logs = {"log": where["log"], "log_dir": where["log_dir"]}
            if executor == "ray":
                from .executors import run_ray
                placed = {r["file"]: r for r in run_ray(cfgs, outs, report, logs=logs, **options)}
            elif executor == "slurm":
                from .executors import run_slurm
                placed = {r["file"]: r for r in run_slurm(cfgs, outs, report, os.path.join(out_dir, ".submitit"),
                                                          logs=logs, **options)}
            elif strategy == "processes":
                _run_processes(cfgs, outs, workers, report, index, out_dir, logs)
            else:
                _run_in_process(cfgs, outs, chunk, report, logs,
                                train_batch_of_runs if strategy == "vectorised" else train_runs_in_turn)
    finally:
        report.close()

        def last_write():
            for run in index["runs"]:
                path = os.path.join(out_dir, run["file"])
                run["status"] = _status(path, base.epochs)[0]
                if path in placed:  # where it ran (host, pid, Slurm job) and any error
                    run["ran_on"] = {k: v for k, v in placed[path].items() if k not in ("file", "status", "epochs")}
            _write_index(out_dir, index)
        _update_index(index_path, last_write, shared_folder)
    failed = [f"{os.path.basename(r['file'])}: {r.get('error')}" for r in placed.values() if r["status"] == "failed"]
    if failed:
        raise LandscapeError("some runs failed (re-run the command to continue them): " + "; ".join(failed))
    return index


class SweepProgress:
    """One display for the whole sweep: epochs done over all runs, and runs finished."""

    def __init__(self, runs: int, epochs: int, done_epochs: int, finished: int, progress):
        self.runs, self.epochs, self.finished = runs, epochs, finished
        self._seen = {}
        self.reporter = Progress(runs * epochs, "sweep", "epoch", progress, initial=done_epochs)

    def update(self, out: str, epoch: int, train_loss: float) -> None:
        self.finished += epoch == self.epochs
        line = (f"{os.path.basename(out)} epoch {epoch}/{self.epochs}  train loss {train_loss:.4f}  "
                f"runs finished {self.finished}/{self.runs}")
        self.reporter.update(line=line, postfix=line)

    def ended(self, out: str, message: str) -> None:
        """A run that stopped early (non-finite values): finished, with its reason shown."""
        self.finished += 1
        self.reporter.note(f"{os.path.basename(out)}: {message}")

    def run_finished(self, out: str, result: dict) -> None:
        """A run trained elsewhere (a Ray or Slurm task) has returned: its epochs at once."""
        from .trajectory import Trajectory
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


# --- processes -----------------------------------------------------------------------------

def _worker_main() -> None:
    """A worker process: ``python -c '...' JOB.json`` trains its share of the runs one after
    another with one thread, and reports each committed epoch as a line on stdout."""
    torch.set_num_threads(1)
    job = json.load(open(sys.argv[1]))
    logs = job.get("logs") or {}
    for cfg_dict, out in job["runs"]:
        cfg = TrainConfig.from_dict(cfg_dict)
        resume = os.path.exists(out)

        def report(epoch, metrics, out=out):
            print(f"EPOCH\t{out}\t{epoch}\t{metrics['train_loss']}", flush=True)

        try:
            traj = train(None if resume else cfg, out, resume=resume, progress=False,
                         on_epoch=report, **logs, **({"epochs": cfg.epochs} if resume else {}))
            if traj.status == "nonfinite":
                print(f"NONFINITE\t{out}\t{nonfinite_message(traj.status_detail)}", flush=True)
        except LandscapeError as e:
            print(f"FAILED\t{out}\t{e}", flush=True)
            sys.exit(2)


def _run_processes(cfgs, outs, workers, report, index, out_dir, logs=None) -> None:
    """Worker processes (separate interpreters, so no fork of a threaded torch and no
    ``__main__`` guard needed by callers), each with a round-robin share of the runs."""
    import subprocess
    import tempfile
    import threading
    from queue import Queue
    workers = max(1, min(len(cfgs), workers or os.cpu_count() or 1))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    lines: Queue = Queue()
    procs, job_files = [], []
    for w in range(workers):
        share = [(dataclasses.asdict(c), o) for c, o in list(zip(cfgs, outs))[w::workers]]
        fd, path = tempfile.mkstemp(prefix=".sweep-job-", suffix=".json", dir=out_dir)
        with os.fdopen(fd, "w") as f:
            json.dump({"runs": share, "logs": logs or {}}, f)
        job_files.append(path)
        p = subprocess.Popen([sys.executable, "-c", "from landscape.sweep import _worker_main; _worker_main()",
                              path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(p)
        threading.Thread(target=lambda p=p: [lines.put(l) for l in p.stdout] + [lines.put(None)],
                         daemon=True).start()
    failures, open_pipes = [], len(procs)
    try:
        while open_pipes:
            line = lines.get()
            if line is None:
                open_pipes -= 1
                continue
            kind, out, *rest = line.rstrip("\n").split("\t")
            if kind == "EPOCH":
                report.update(out, int(rest[0]), float(rest[1]))
            elif kind == "NONFINITE":
                report.ended(out, rest[0])
            elif kind == "FAILED":
                failures.append(f"{os.path.basename(out)}: {rest[0]}")
        for p in procs:
            p.wait()
            if p.returncode not in (0, 2):
                failures.append(f"a worker died (exit {p.returncode}): {p.stderr.read().strip()[-500:]}")
    except BaseException:
        # an interrupted sweep stops its workers the way Ctrl-C would, so each closes its file
        # with the epoch in flight uncommitted; their runs resume on the next call
        import signal
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    finally:
        for path in job_files:
            os.remove(path)
    if failures:
        raise LandscapeError("; ".join(failures))


# --- auto: a probe of the in-process strategies on this GPU --------------------------------

def _auto_strategy(base, values, index_path, where) -> tuple[str, dict | None]:
    """processes on a CPU; on a GPU the strategy an earlier call of this sweep chose (so a
    resumed sweep trains on as it began), else the fastest of ``PROBED`` on a short probe."""
    if where["device"].type != "cuda":
        return "processes", None
    try:
        old = json.load(open(index_path))
        if old.get("strategy") in STRATEGIES[1:]:
            return old["strategy"], old.get("strategy_probe")
    except (OSError, ValueError):
        pass
    if len(values) < 2:
        return "streams", None  # one model: nothing to batch or share
    candidates = [s for s in PROBED if not (s == "vectorised" and base.channels_last)]  # vmap cannot keep it
    probe = probe_strategies(base, values[:where["chunk"] or len(values)], candidates, workers=where["workers"])
    return probe["chosen"], probe


def probe_strategies(base: TrainConfig, values, strategies=PROBED, batches: int = 20, workers: int | None = None,
                     progress=False) -> dict:
    """Time each strategy on these models and this device: a throw-away sweep of 3 epochs of
    ``batches`` batches (the real code path, into a temporary folder), read from the second
    epoch's wall times (warm: cuDNN autotuned, compiled; interpreter start-ups excluded). The
    in-process strategies record each model's share of an epoch, so their rate is N images
    over the shares' sum; processes run concurrently, each worker its round-robin share in
    turn, so theirs is the sum over workers of their images over their time. Returns
    ``{"images_per_second": {strategy: aggregate rate}, "chosen": the fastest, "models": N,
    "batches": B}``."""
    import shutil
    import tempfile
    available = base.train_subset or len(load_training_data(base).y_train)
    subset = min(batches * base.batch_size, available)
    rates = {}
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
                rates[strategy] = sum(len(seconds[w::n_workers]) * subset / sum(seconds[w::n_workers])
                                      for w in range(n_workers))
            else:
                rates[strategy] = len(values) * subset / sum(seconds)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {"images_per_second": rates, "chosen": max(rates, key=rates.get), "models": len(values),
            "batches": batches}


# --- in one process: vectorised, streams --------------------------------------------------

def _run_in_process(cfgs, outs, chunk, report, logs, train_group) -> None:
    """Chunks of runs prepared in this process and trained together by ``train_group``
    (``train_batch_of_runs`` or ``train_runs_in_turn``)."""
    chunk = chunk or len(cfgs)
    if chunk < 1:
        raise LandscapeError(f"--chunk must be positive, got {chunk}")
    data = load_training_data(cfgs[0])
    for i in range(0, len(cfgs), chunk):
        runs = []
        try:
            for cfg, out in zip(cfgs[i:i + chunk], outs[i:i + chunk]):
                runs.append(prepare_run(cfg, out, data, resume=os.path.exists(out)))
                open_run_mirrors(runs[-1], (logs or {}).get("log"), (logs or {}).get("log_dir"))
            # runs left at different epochs by an interruption train in groups of equal start
            for start in sorted({r.start for r in runs}):
                train_group([r for r in runs if r.start == start], data, report)
        finally:
            for r in runs:
                close_run_mirrors(r)
                r.writer.close()


def train_runs_in_turn(runs, data, report) -> None:
    """Train runs that share everything but the ELR in one process, batch by batch: every
    model takes its step on the same batch, each on its own CUDA stream (the batch is made
    once on the default stream; each stream waits for it, the default stream waits for all at
    the epoch's end). On a CPU the models step in turn. Each model's computation is exactly a
    single run's (``training.train_step``), so the trajectories are bit-identical to
    ``landscape train``'s on a CPU."""
    import contextlib
    cfg = runs[0].cfg
    dev = data.x_train.device
    cuda = dev.type == "cuda"
    streams = [torch.cuda.Stream(dev) if cuda else None for _ in runs]
    forwards = [compiled(r.model, cfg.compile_mode) if cfg.compile else r.model for r in runs]
    live = list(range(len(runs)))  # runs stopped by non-finite values leave it

    def on(j, tensors):
        if not cuda:
            return contextlib.nullcontext()
        streams[j].wait_stream(torch.cuda.current_stream(dev))
        for t in tensors:  # the allocator must not reuse the batch while stream j reads it
            t.record_stream(streams[j])
        return torch.cuda.stream(streams[j])

    for epoch in range(runs[0].start + 1, cfg.epochs + 1):
        if not live:
            break
        t0 = time.perf_counter()
        lrs = [epoch_lr(cfg, r.lr, epoch) for r in runs]
        accs = {j: EpochAccumulator() for j in live}
        rates = {j: step_rates(lrs[j], runs[j].rho, runs[j].params) if cfg.compile else None for j in live}
        for j in live:
            runs[j].model.train()
        for x, y in train_batches(data, cfg.batch_size, epoch, cfg.data_seed, cfg.augment,
                                  cfg.augment_padding):
            if cfg.channels_last and x.dim() == 4:  # once for all the models
                x = x.contiguous(memory_format=torch.channels_last)
            for j in live:
                with on(j, (x, y)):
                    train_step(forwards[j], runs[j].params, x, y, lrs[j], runs[j].rho, cfg, accs[j],
                               runs[j].buffers, rates[j])
        for j in live:
            with on(j, ()):
                end_epoch(accs[j], runs[j].params, cfg)
        if cuda:
            for stream in streams:
                torch.cuda.current_stream(dev).wait_stream(stream)
        share = len(live)
        for j in list(live):
            metrics, bad = close_epoch(runs[j], accs[j], epoch, lrs[j], data, t0, share)
            if metrics is None:
                live.remove(j)
                report.ended(runs[j].out, nonfinite_message(bad))
            else:
                report.update(runs[j].out, epoch, metrics["train_loss"])


def train_batch_of_runs(runs, data, report) -> None:
    """Train runs that share everything but the ELR as one stacked model, epoch by epoch, each
    committed to its own trajectory exactly as ``landscape train`` commits it."""
    from torch.func import functional_call, grad, stack_module_state, vmap
    import copy
    cfg = runs[0].cfg
    names = runs[0].names
    params, buffers = stack_module_state([r.model for r in runs])
    params = {k: v.detach() for k, v in params.items()}
    trainable = {k: params[k] for k in names}
    frozen = {k: v for k, v in params.items() if k not in names}
    template = copy.deepcopy(runs[0].model).to("meta")
    dev = data.x_train.device
    dtype = next(iter(trainable.values())).dtype
    rho = torch.tensor([r.rho for r in runs], dtype=torch.float64, device=dev).to(dtype)
    si_list = [trainable[k] for k in names]
    whole = cfg.space == "whole"
    buffers_list = ([torch.stack([r.buffers[i] for r in runs]) for i in range(len(names))]
                    if runs[0].buffers is not None else None)

    bf16 = cfg.precision == "bf16"
    if bf16:
        float_batchnorm(template)

    def loss_fn(tp, fp, b, x, y):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = functional_call(template, ({**tp, **fp}, b), (x,))
        out = out.float() if bf16 else out  # the loss in float32, as measure_batch takes it
        loss = F.cross_entropy(out, y)
        return loss, (loss, (out.argmax(1) == y).sum())

    step = vmap(grad(loss_fn, has_aux=True), in_dims=(0, 0, 0, None, None))
    update = statistics_and_step
    if cfg.compile:  # the whole vmapped forward and backward as one graph, the update as another
        step = torch.compile(step, **compile_options(cfg.compile_mode))
        update = compiled_update(cfg.compile_mode)

    def test_pass(p, b, x, y):
        out = functional_call(template, (p, b), (x,))
        return F.cross_entropy(out, y, reduction="sum").double(), (out.argmax(1) == y).sum()

    evaluate = vmap(test_pass, in_dims=(0, 0, None, None))
    ended = set()  # runs stopped by non-finite values
    for epoch in range(runs[0].start + 1, cfg.epochs + 1):
        if len(ended) == len(runs):
            break
        t0 = time.perf_counter()
        lrs = [epoch_lr(cfg, r.lr, epoch) for r in runs]
        lr = torch.tensor(lrs, dtype=torch.float64, device=dev)
        lr_step = lr.to(dtype)
        template.train()
        acc = EpochAccumulator()
        for x, y in train_batches(data, cfg.batch_size, epoch, cfg.data_seed, cfg.augment,
                                  cfg.augment_padding):
            grads, (loss, correct) = step(trainable, frozen, buffers, x, y)
            # the statistics and the batched step (with --compile: one compiled function)
            stats, rho_end_sq = update(si_list, [grads[k] for k in names], lr_step, lr, rho,
                                       cfg.groups == "filter", whole, buffers_list, cfg.momentum,
                                       cfg.weight_decay, 1)
            acc.add(stats, loss, correct, len(y))
            acc.end_step(rho_end_sq)
        end_epoch(acc, si_list, cfg, batch_dims=1)
        test = None
        if is_eval_epoch(cfg, epoch):
            template.eval()
            with torch.no_grad():
                loss_sum = torch.zeros(len(runs), dtype=torch.float64, device=dev)
                correct = torch.zeros(len(runs), dtype=torch.int64, device=dev)
                for i in range(0, len(data.y_test), 1000):
                    ls, cs = evaluate({**trainable, **frozen}, buffers, data.x_test[i:i + 1000],
                                      data.y_test[i:i + 1000])
                    loss_sum += ls
                    correct += cs
            test = (loss_sum.cpu().numpy() / len(data.y_test), correct.cpu().numpy() / len(data.y_test))
        seconds = (time.perf_counter() - t0) / len(runs)
        for j, run in enumerate(runs):
            if j in ended:  # its model keeps computing NaN beside the others, uncommitted
                continue
            bad = acc.nonfinite(index=j)
            if bad is not None:
                ended.add(j)
                report.ended(run.out, nonfinite_message(end_nonfinite(run, epoch, bad)))
                continue
            metrics, groups, filters = acc.metrics(lrs[j], index=j)
            if test is None:
                metrics["test_loss"] = metrics["test_accuracy"] = float("nan")
            else:
                metrics["test_loss"], metrics["test_accuracy"] = float(test[0][j]), float(test[1][j])
            state = {k: (params[k][j] if k in params else buffers[k][j]).detach().clone()
                     for k in run.model.state_dict()}
            if buffers_list is not None:
                state.update({f"{OPTIMIZER_PREFIX}momentum.{n}": b[j].detach().clone()
                              for n, b in zip(names, buffers_list)})
            commit_epoch(run, epoch, metrics, groups, filters, state, seconds, data, lrs[j])
            report.update(run.out, epoch, metrics["train_loss"])


# --- CLI -----------------------------------------------------------------------------------


