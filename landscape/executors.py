"""Where a sweep's runs are trained beyond the in-process strategies: worker processes on this
machine (``run_processes``), Ray tasks (``run_ray``) or a Slurm job array through submitit
(``run_slurm``), all writing the shared sweep folder as the in-process strategies write it. No
scheduler of our own: every worker trains one run at a time with ``run.train_or_resume``, so a
retried task (a killed Ray worker, a requeued or resubmitted Slurm task) continues from the last
committed epoch, and the trajectory's one-writer lock keeps two workers off one file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from queue import Queue

from .errors import ArgumentError, LandscapeError

EXECUTORS = ("local", "ray", "slurm")
FAULT_ENV = "LANDSCAPE_FAULT_EXIT"  # testing: "EPOCH:MARKER" exits a worker once at that epoch


def run_one(cfg_dict: dict, out: str, threads: int = 1, logs: dict | None = None, on_epoch=None) -> dict:
    """Train (or resume) one run of a sweep in a worker; returns where it ran and how it ended
    ({file, host, pid, status, epochs, error, message})."""
    import torch
    from .config import TrainConfig
    from .run import nonfinite_message, train_or_resume
    torch.set_num_threads(threads)
    where = {"file": out, "host": socket.gethostname(), "pid": os.getpid()}
    hooks = [h for h in (on_epoch, _fault_hook()) if h is not None]
    try:
        t = train_or_resume(TrainConfig.from_dict(cfg_dict), out, progress=False, **(logs or {}),
                            on_epoch=(lambda e, m: [h(e, m) for h in hooks]) if hooks else None)
    except LandscapeError as e:
        return {**where, "status": "failed", "error": str(e)}
    result = {**where, "status": t.status, "epochs": t.epochs_complete}
    if t.status == "nonfinite":
        result["message"] = nonfinite_message(t.status_detail)
    return result


def _fault_hook():
    """Fault injection for the tests: with LANDSCAPE_FAULT_EXIT="EPOCH:MARKER" the first worker
    to commit EPOCH (the marker file does not exist yet) creates the marker and dies at once,
    as a killed worker would."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    epoch, marker = spec.split(":", 1)

    def hook(e, metrics):
        if e == int(epoch):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os._exit(17)
    return hook


# --- processes on this machine --------------------------------------------------------------

SLOTS_ENV = "LANDSCAPE_SLOTS"  # "N" or "N:FOLDER": the run slots every sweep's workers share


def slots_setting() -> tuple[int, str] | None:
    """``LANDSCAPE_SLOTS`` read: (number of slots, the folder of their lock files) or None."""
    spec = os.environ.get(SLOTS_ENV)
    if not spec:
        return None
    count, _, folder = spec.partition(":")
    if not count.isdigit() or int(count) < 1:
        raise LandscapeError(f"{SLOTS_ENV}={spec}: expected a positive number of run slots, N or N:FOLDER "
                             f"(e.g. {SLOTS_ENV}={os.cpu_count()})")
    return int(count), folder or os.path.join(tempfile.gettempdir(), f"landscape-slots-{os.getuid()}")


def _queue_ticket(folder: str) -> tuple[int, str]:
    """Join the slots' queue: a file named by the time of joining, held under an exclusive
    ``flock`` while its owner waits (so a killed waiter's ticket is seen as stale). It is
    locked before it is renamed into the queue, so no waiter ever sees it unlocked and takes it
    for stale. Returns (the open descriptor, its path)."""
    queue = os.path.join(folder, "queue")
    os.makedirs(queue, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}"
    unqueued = os.path.join(folder, f".ticket-{name}")
    fd = os.open(unqueued, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    path = os.path.join(queue, name)
    os.rename(unqueued, path)
    return fd, path


def _first_in_queue(path: str) -> bool:
    """Whether the ticket ``path`` is the oldest live one of its queue (stale tickets, whose
    owners died, are removed on the way)."""
    queue, mine = os.path.split(path)
    for name in sorted(os.listdir(queue)):
        if name == mine:
            return True
        try:
            fd = os.open(os.path.join(queue, name), os.O_RDWR)
        except FileNotFoundError:  # its owner took a slot meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live waiter ahead
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(queue, name))  # nobody holds it: its owner died
    return True


def _free_slot(folder: str, count: int) -> int | None:
    """The descriptor of a free slot's file, now locked by this process, or None."""
    for i in range(count):
        fd = os.open(os.path.join(folder, f"slot{i}"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
    return None


@contextlib.contextmanager
def run_slot():
    """Hold one of ``LANDSCAPE_SLOTS``'s run slots (an exclusive ``flock`` on one of N files)
    while a run trains, on one thread (a slot is one core), waiting for one to free; without
    the variable, nothing. Several sweeps started at once on one machine then keep N runs
    training, never more, and a core a sweep leaves idle at its end goes to another sweep's
    next run. Waiters take the slots in the order they asked (a queue of tickets), so a worker
    that ends a run queues behind those already waiting instead of taking its slot straight
    back. A killed holder's lock, and a killed waiter's ticket, go with its process."""
    setting = slots_setting()
    if setting is None:
        yield
        return
    import torch
    count, folder = setting
    ticket, ticket_path = _queue_ticket(folder)
    slot = None
    try:
        while slot is None:
            if _first_in_queue(ticket_path):
                slot = _free_slot(folder, count)
            if slot is None:
                time.sleep(0.2)
    finally:  # out of the queue, with a slot or interrupted: the next waiter is first now
        os.unlink(ticket_path)
        os.close(ticket)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        os.close(slot)  # releases the lock


_compiled_here = False  # this worker has compiled a run's model: its later runs reuse the code


@contextlib.contextmanager
def compile_gate(cfg_dict: dict):
    """With ``LANDSCAPE_SLOTS`` set, one first compile at a time among the machine's workers: a
    worker whose run compiles (``compile``) and that has not compiled yet holds an exclusive
    ``flock`` on the slots' folder's ``compile`` file from before it takes a run slot until the
    run's first training epoch has committed (by then the forward, the checkpoint pass's copy
    and the update are compiled, and inductor's cache holds their code). Another such worker
    waits for it without a slot, so its core trains other runs meanwhile, and then compiles from
    the warm cache: the Section-6 ResNet's first compile measured 248 s cold, 18 s warm. Yields
    ``compiled()``, to call when an epoch past 0 has committed; without the variable, or with
    nothing to compile, the gate is open."""
    global _compiled_here
    setting = slots_setting()
    if setting is None or not cfg_dict.get("compile") or _compiled_here:
        yield lambda: None
        return
    os.makedirs(setting[1], exist_ok=True)
    fd = os.open(os.path.join(setting[1], "compile"), os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held = [True]

    def compiled():
        global _compiled_here
        _compiled_here = True
        if held[0]:
            held[0] = False
            os.close(fd)  # releases the lock
    try:
        yield compiled
    finally:
        if held[0]:  # the run ended before a training epoch: its worker's next run takes the gate again
            held[0] = False
            os.close(fd)


def worker_main() -> None:
    """A worker process: ``python -c '...' JOB.json`` trains its share of the runs one after
    another with one thread (``run_one``), and reports each committed epoch as a line on stdout."""
    job = json.load(open(sys.argv[1]))
    for cfg_dict, out in job["runs"]:
        with compile_gate(cfg_dict) as compiled, run_slot():
            def report(epoch, metrics, out=out, compiled=compiled):
                if epoch > 0:
                    compiled()
                print(f"EPOCH\t{out}\t{epoch}\t{metrics['train_loss']}", flush=True)
            result = run_one(cfg_dict, out, 1, job.get("logs") or {}, on_epoch=report)
        if result["status"] == "failed":
            print(f"FAILED\t{out}\t{result['error']}", flush=True)
            sys.exit(2)
        if result["status"] == "nonfinite":
            print(f"NONFINITE\t{out}\t{result['message']}", flush=True)
        print(f"DONE\t{out}", flush=True)


# a worker's program: '' (the current folder) leaves sys.path first, so a folder that holds a
# `landscape/` directory (a clone of the repository) cannot shadow the installed package
WORKER = ("import os, sys\n"
          "if sys.path and sys.path[0] in ('', os.getcwd()): del sys.path[0]\n"
          "from landscape.executors import worker_main; worker_main()")


def run_processes(cfgs, outs, workers, report, out_dir, logs=None) -> None:
    """Worker processes (separate interpreters, so no fork of a threaded torch and no
    ``__main__`` guard needed by callers), each with a round-robin share of the runs."""
    workers = max(1, min(len(cfgs), workers or os.cpu_count() or 1))
    slots_setting()  # a malformed LANDSCAPE_SLOTS is refused here, before any worker starts
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    lines: Queue = Queue()
    procs, job_files, shares, ended = [], [], [], set()
    for w in range(workers):
        share = [(dataclasses.asdict(c), o) for c, o in list(zip(cfgs, outs))[w::workers]]
        fd, path = tempfile.mkstemp(prefix=".sweep-job-", suffix=".json", dir=out_dir)
        with os.fdopen(fd, "w") as f:
            json.dump({"runs": share, "logs": logs or {}}, f)
        job_files.append(path)
        p = subprocess.Popen([sys.executable, "-c", WORKER, path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        procs.append(p)
        shares.append([o for _, o in share])
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
                report.update(out, int(rest[0]), {"train_loss": float(rest[1])})
            elif kind == "NONFINITE":
                report.ended(out, rest[0])
            elif kind == "FAILED":
                failures.append(f"{os.path.basename(out)}: {rest[0]}")
            elif kind == "DONE":
                ended.add(out)
        for p, share in zip(procs, shares):
            p.wait()
            if p.returncode not in (0, 2):
                unfinished = [os.path.basename(o) for o in share if o not in ended]
                last = (p.stderr.read().strip().splitlines() or ["no message"])[-1][-300:]
                failures.append(f"the worker training {', '.join(unfinished) or 'its runs'} died (exit "
                                f"{p.returncode}: {last}); their committed epochs are safe: re-run the same "
                                f"command to resume them")
    except BaseException:
        # an interrupted sweep stops its workers the way Ctrl-C would, so each closes its file
        # with the epoch in flight uncommitted; their runs resume on the next call
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


# --- clusters -----------------------------------------------------------------------------

def run_ray(cfgs, outs, report, *, address: str | None = None, gpus_per_run: float = 0.0,
            retries: int = 3, num_cpus: int | None = None, logs: dict | None = None) -> list[dict]:
    """One Ray task per run on the cluster at ``address`` (None: a local Ray instance started for
    the sweep), ``gpus_per_run`` a fraction so that several small models share a GPU. A task
    whose worker dies is retried (``retries``) and resumes from its last committed epoch."""
    import ray
    started = not ray.is_initialized()
    if started:
        kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    task = ray.remote(max_retries=retries, retry_exceptions=False, num_cpus=1,
                      num_gpus=gpus_per_run)(run_one)
    try:
        refs = {task.remote(dataclasses.asdict(c), o, 1, logs): o for c, o in zip(cfgs, outs)}
        results = []
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            out = refs.pop(done[0])
            try:
                r = ray.get(done[0])
            except Exception as e:  # retries exhausted: the run stays partial, re-run continues it
                r = {"file": out, "status": "failed", "error": f"{type(e).__name__}: {str(e)[:300]}"}
            report.run_finished(out, r)
            results.append(r)
        return results
    finally:
        if started:
            ray.shutdown()


class SlurmRun:
    """A sweep run as a submitit job: ``checkpoint`` makes Slurm preemption and timeouts
    requeue it (the run resumes from its last committed epoch)."""

    def __init__(self, logs: dict | None = None):
        self.logs = logs

    def __call__(self, cfg_dict: dict, out: str) -> dict:
        return run_one(cfg_dict, out, logs=self.logs)

    def checkpoint(self, cfg_dict: dict, out: str):
        import submitit
        return submitit.helpers.DelayedSubmission(SlurmRun(self.logs), cfg_dict, out)


def run_slurm(cfgs, outs, report, folder: str, *, cluster: str | None = None, partition: str | None = None,
              timeout_min: int = 60 * 24, gpus_per_task: int = 0, array_parallelism: int = 256,
              retries: int = 3, logs: dict | None = None) -> list[dict]:
    """The runs as one submitit job array (``cluster`` None: Slurm when available; 'local':
    real subprocesses on this machine, what the tests use). Preemption and timeouts requeue a
    task; a task that dies otherwise is resubmitted (up to ``retries`` rounds) and resumes."""
    import submitit
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": timeout_min}
    if executor.cluster == "slurm":
        params.update(slurm_array_parallelism=array_parallelism, gpus_per_node=gpus_per_task,
                      **({"slurm_partition": partition} if partition else {}))
    executor.update_parameters(**params)
    pending = list(zip(cfgs, outs))
    results = {}
    for _ in range(retries + 1):
        jobs = executor.map_array(SlurmRun(logs), [dataclasses.asdict(c) for c, _ in pending],
                                  [o for _, o in pending])
        failed = []
        for job, (cfg, out) in zip(jobs, pending):
            try:
                r = job.result()
            except Exception as e:  # the task died (killed, out of memory): resubmit, it resumes
                r = {"file": out, "status": "failed", "error": f"{type(e).__name__}: {str(e)[:300]}",
                     "job": job.job_id}
            r["job"] = job.job_id
            results[out] = r
            if r["status"] == "failed":
                failed.append((cfg, out))
            else:
                report.run_finished(out, r)
        pending = failed
        if not pending:
            break
    for _, out in pending:
        report.run_finished(out, results[out])
    return [results[o] for o in outs]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/N' (0 <= i < N), or 'slurm': from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT."""
    if text is None:
        return None
    if text == "slurm":
        try:
            return int(os.environ["SLURM_ARRAY_TASK_ID"]), int(os.environ["SLURM_ARRAY_TASK_COUNT"])
        except (KeyError, ValueError):
            raise ArgumentError("shard 'slurm' needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT "
                                 "(run it inside a Slurm job array)", "shard") from None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ArgumentError(f"shard {text!r}: write I/N, e.g. 0/4, or 'slurm'", "shard") from None
    if not 0 <= i < n:
        raise ArgumentError(f"shard {text}: need 0 <= I < N", "shard")
    return i, n
