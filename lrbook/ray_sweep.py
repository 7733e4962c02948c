"""Sweeps on a Ray cluster: the same runs, claims and records as `lrbook.sweep.run_sweep`, spread
over every machine Ray knows (optional: `pip install -e ".[ray]"`; the local process pool in
`lrbook.sweep` stays the default).

    from lrbook.ray_sweep import run_sweep_ray
    run_sweep_ray(grid("parity", lrs=LRS, seeds=(0, 1, 2)), gpus_per_run=0.25)   # 4 runs per GPU
    run_sweep_ray(configs, address="auto")            # a running cluster (or "ray://head:10001")

Each run is one Ray task whose body is `lrbook.sweep.run_one`: it claims the run in the store,
trains it and writes the record with `ResultStore.put` (atomic) from the worker itself. So:

* The store folder must be shared storage (NFS, a cluster file system...) mounted at the same
  path on the driver and on every Ray node; lrbook must be importable on every node (install it
  there, or start Ray yourself with `ray.init(runtime_env={"py_modules": [lrbook]})` before calling
  `run_sweep_ray`, which then uses that connection).
* Stored runs are never retrained: the driver skips them before submitting, and the worker's
  `claim()` checks again (a run finished elsewhere meanwhile is reported as already stored).
* A worker that dies mid-run (killed, out of memory, node lost) gets its task retried by Ray, up
  to `max_retries` times. The dead attempt's claim does not block the retry: the claim names its
  Ray task id as owner (the id stays the same across retries), and a claim of the same owner is
  taken over at once. A claim of any other process is respected while its heartbeat lives; one
  whose heartbeat stopped (a node that died outside any retry) is taken over after
  `lrbook.store.claim_timeout()` seconds. (Should Ray retry a task whose old attempt still runs,
  e.g. on a node cut off from the head but alive, both train the run; each writes the same record
  atomically, so only time is lost.)
"""
from __future__ import annotations

import os
import traceback
import warnings
from pathlib import Path

from .store import ResultStore
from .sweep import SweepReport, finish, plan

INSTALL_HINT = ('run_sweep_ray needs Ray, an optional extra of lrbook: pip install -e ".[ray]" '
                '(or pip install "ray[default]>=2.9"); the local lrbook.sweep.run_sweep needs no Ray')


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return ray


# -- the task, run on a Ray worker -------------------------------------------------------------

def _attempt(body, cfg_dict: dict, store_root: str, device: str, data_root, threads: int | None):
    """One attempt of one run: `body` (`run_one`: claim, train, put, release) with this Ray task's id
    as the claim's owner, so that a retry takes over the claim of an attempt that died."""
    import ray

    from .sweep import run_one

    task_id = ray.get_runtime_context().get_task_id() or "driver"
    return (body or run_one)(cfg_dict, store_root, device, data_root, threads, False, owner=f"ray-task-{task_id}")


_REMOTE = None


def _remote():
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = _import_ray().remote(_attempt)
    return _REMOTE


# -- the driver ----------------------------------------------------------------------------------

def _check_device(device: str, gpus_per_run: float) -> str:
    """The device string the workers get. Ray gives a task only the GPUs it asked for (it sets
    CUDA_VISIBLE_DEVICES), so "auto" means CPU when no GPU is asked for, and a GPU index is
    meaningless (the task's GPU is always cuda:0 inside it)."""
    device = str(device)
    if device.startswith("cuda"):
        if gpus_per_run <= 0:
            raise ValueError(f"device={device!r} needs gpus_per_run > 0 (e.g. 0.25: four runs per GPU), "
                             "so that Ray gives each run a GPU")
        if device != "cuda":
            raise ValueError(f"device={device!r}: Ray picks each run's GPU; pass device='cuda' or 'auto'")
    if device == "auto" and gpus_per_run <= 0:
        return "cpu"
    return device


def _check_resources(ray, cpus_per_run: float, gpus_per_run: float, started_here: bool) -> None:
    have = ray.cluster_resources()
    for name, need in (("CPU", cpus_per_run), ("GPU", gpus_per_run)):
        if need > 0 and have.get(name, 0) < need:
            msg = (f"each run asks for {need} {name} but the Ray cluster has {have.get(name, 0)}; "
                   f"lower {name.lower()}s_per_run" + (" or add nodes" if not started_here else ""))
            if started_here:
                raise ValueError(msg)
            warnings.warn(msg + " (the tasks wait until the cluster grows)", stacklevel=3)


def run_sweep_ray(configs, store: ResultStore | None = None, address: str | None = None,
                  gpus_per_run: float = 0.0, cpus_per_run: float = 1.0, device: str = "auto",
                  data_root=None, max_retries: int = 3, progress: bool = True, *,
                  _body=None) -> SweepReport:
    """Train every config the store lacks as Ray tasks; returns what happened to each run, like
    `lrbook.sweep.run_sweep` (and raises the same RuntimeError if some runs failed).

    address: if this process is already connected to Ray (`ray.init` was called), that connection
        is used and `address` is ignored. Otherwise None starts a local Ray on this machine (all
        its cores and GPUs; shut down at the end), and "auto", "ray://head:10001"... connect to a
        running cluster (disconnected at the end).
    gpus_per_run, cpus_per_run: Ray resources per run; fractions share a device (gpus_per_run=0.25
        runs four at a time on each GPU). cpus_per_run (rounded down, at least 1) is also the
        number of torch threads per run. With gpus_per_run=0 runs train on CPU.
    max_retries: how often a run whose worker died is started again (Ray task retries; a run that
        raises an error is not retried: it is reported as failed, like in `run_sweep`).
    store: shared by the driver and all workers (see the module docstring); default: the default
        store ($LRBOOK_STORE or results/).
    _body: for tests, a function with `run_one`'s signature run in place of it.
    """
    from tqdm.auto import tqdm

    ray = _import_ray()
    store = ResultStore() if store is None else store
    worker_device = _check_device(device, gpus_per_run)
    if cpus_per_run <= 0 or gpus_per_run < 0:
        raise ValueError("cpus_per_run must be > 0 and gpus_per_run >= 0")
    report, todo = plan(configs, store)
    if not todo:
        return report

    started_here = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                     include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        started_here = True
    try:
        _check_resources(ray, cpus_per_run, gpus_per_run, started_here and address is None)
        root = str(Path(store.root).expanduser().absolute())
        data = None if data_root is None else str(Path(data_root).expanduser().absolute())
        threads = max(1, int(cpus_per_run))
        opts = dict(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries, retry_exceptions=False)
        refs = {_remote().options(name=f"lrbook-{c.run_id}", **opts).remote(
            _body, c.to_dict(), root, worker_device, data, threads): c.run_id for c in todo}
        _collect(ray, refs, report, tqdm(total=len(refs), desc="ray sweep", disable=not progress))
    finally:
        if started_here:
            ray.shutdown()
    return finish(report)


def _collect(ray, refs: dict, report: SweepReport, bar) -> None:
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                run_id = refs[ref]
                try:
                    _, outcome = ray.get(ref)
                except Exception as e:  # RayTaskError (the run raised), WorkerCrashedError (retries spent)
                    report.failed[run_id] = str(e) or traceback.format_exc()
                else:
                    report.note(run_id, outcome)
                bar.update()
    except BaseException:  # Ctrl-C: stop the runs in flight (KeyboardInterrupt in them: claims released)
        for ref in pending:
            try:
                ray.cancel(ref)
            except Exception:
                pass
        raise
    finally:
        bar.close()
