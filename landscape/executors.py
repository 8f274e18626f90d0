"""Sweeps beyond one machine (issue 17): the runs of a sweep as tasks of an existing engine,
Ray or Slurm through submitit, written to the shared sweep folder as the local strategies write
them. No scheduler of our own: a run is one call of ``run_one``, which trains or resumes its
trajectory to the sweep's epoch count, so a retried task (a killed Ray worker, a requeued or
resubmitted Slurm task) continues from the last committed epoch, and the trajectory's one-writer
lock keeps two workers off one file.
"""
from __future__ import annotations

import dataclasses
import os
import socket

EXECUTORS = ("local", "ray", "slurm")
FAULT_ENV = "LANDSCAPE_FAULT_EXIT"  # testing: "EPOCH:MARKER" exits a worker once at that epoch


def run_one(cfg_dict: dict, out: str, threads: int = 1, logs: dict | None = None) -> dict:
    """Train (or resume) one run of a sweep in a worker; returns where it ran and how it ended."""
    import torch
    from .errors import LandscapeError
    from .training import TrainConfig, train
    torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict(cfg_dict)
    resume = os.path.exists(out)
    where = {"file": out, "host": socket.gethostname(), "pid": os.getpid()}
    try:
        t = train(None if resume else cfg, out, resume=resume, progress=False,
                  on_epoch=_fault_hook(), **(logs or {}), **({"epochs": cfg.epochs} if resume else {}))
    except LandscapeError as e:
        return {**where, "status": "failed", "error": str(e)}
    return {**where, "status": t.status, "epochs": t.epochs_complete}


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
    from .errors import LandscapeError
    if text is None:
        return None
    if text == "slurm":
        try:
            return int(os.environ["SLURM_ARRAY_TASK_ID"]), int(os.environ["SLURM_ARRAY_TASK_COUNT"])
        except (KeyError, ValueError):
            raise LandscapeError("--shard slurm needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT "
                                 "(run it inside a Slurm job array)") from None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise LandscapeError(f"--shard {text!r}: write I/N, e.g. 0/4, or 'slurm'") from None
    if not 0 <= i < n:
        raise LandscapeError(f"--shard {text}: need 0 <= I < N")
    return i, n
