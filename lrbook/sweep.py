"""Sweeps: run the configs the store lacks, in parallel worker processes, resumable.

Each finished run is written to the store the moment it ends, so an interrupted sweep loses only
the runs in flight; running the same sweep again trains only what is missing. Several workers
(or several machines on a shared store) never train the same run twice: each run is claimed first.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

from .config import RunConfig, validate
from .store import ResultStore, stands_for


@dataclass
class SweepReport:
    trained: list[str] = field(default_factory=list)
    already_stored: list[str] = field(default_factory=list)
    claimed_elsewhere: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def __str__(self):
        return (f"{len(self.trained)} trained, {len(self.already_stored)} already stored, "
                f"{len(self.claimed_elsewhere)} running elsewhere, {len(self.failed)} failed")


def missing(configs, store: ResultStore) -> list[RunConfig]:
    """The configs (deduplicated, in order) that no stored record stands for: neither their own nor
    one of the same training run that logged at least what they ask for (`store.stands_for`), e.g. a
    run stored with a unit trace stands for the same run asked for without one."""
    seen, out, stored = set(), [], None
    for c in configs:
        if c.run_id in seen or store.has(c.run_id):
            continue
        if stored is None:
            stored = list(store.stored_configs().values())
        if not any(stands_for(s, c.to_dict()) for s in stored):
            seen.add(c.run_id)
            out.append(c)
    return out


def already_stored(configs, store: ResultStore) -> list[str]:
    """The run ids of `configs` that a stored record stands for (see `missing`)."""
    todo = {c.run_id for c in missing(configs, store)}
    return [c.run_id for c in configs if c.run_id not in todo]


def _run_one(cfg_dict: dict, store_root: str, device: str, data_root, threads: int | None, progress: bool):
    import torch

    from .experiment import run_experiment

    if threads:
        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(cfg_dict)
    store = ResultStore(store_root)
    if not missing([cfg], store):  # stored since the sweep looked (e.g. by another process)
        return cfg.run_id, "stored"
    if not store.claim(cfg.run_id):
        return cfg.run_id, "claimed"
    try:
        record = run_experiment(cfg, store=store, device=device, data_root=data_root, progress=progress)
        return cfg.run_id, record["status"]
    finally:
        store.release(cfg.run_id)


def run_sweep(configs, store: ResultStore | None = None, workers: int = 1, device: str = "auto",
              data_root=None, progress: bool = True) -> SweepReport:
    """Train every config the store lacks; `workers` > 1 uses that many processes (spawned, each
    with cpu_count // workers torch threads). Returns what happened to each run."""
    from tqdm.auto import tqdm

    store = ResultStore() if store is None else store
    store.check_writable()
    configs = [validate(c) for c in configs]
    report = SweepReport(already_stored=already_stored(configs, store))
    todo = missing(configs, store)
    if not todo:
        return report
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    args = [(c.to_dict(), str(store.root), device, data_root, threads) for c in todo]
    bar = tqdm(total=len(todo), desc="sweep", disable=not progress)

    def note(run_id, outcome):
        if outcome == "claimed":
            report.claimed_elsewhere.append(run_id)
        elif outcome == "stored":
            report.already_stored.append(run_id)
        else:
            report.trained.append(run_id)
        bar.update()

    try:
        if workers <= 1:
            for a in args:
                try:
                    note(*_run_one(*a, progress=progress))
                except Exception:
                    report.failed[RunConfig.from_dict(a[0]).run_id] = traceback.format_exc()
                    bar.update()
        else:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(_run_one, *a, False): a for a in args}
                for fut in as_completed(futures):
                    try:
                        note(*fut.result())
                    except Exception:
                        cfg = RunConfig.from_dict(futures[fut][0])
                        report.failed[cfg.run_id] = traceback.format_exc()
                        bar.update()
    finally:
        bar.close()
    if report.failed:
        first = next(iter(report.failed.values()))
        raise RuntimeError(f"{len(report.failed)} run(s) failed ({report}); first error:\n{first}")
    return report
