"""Sweeps: run the configs the store lacks, resumable, stoppable; one core, several launchers.

The core is written once here: `plan` (validate, clean up what interrupted sweeps left, find what
the store lacks), `run_one` (claim a run, train it, store its record, release the claim) and
`SweepReport` (what happened to each run, and how to resume). The launchers only decide where
`run_one` runs: `run_sweep` (this process, or one spawned process per run), `lrbook.packed.run_packed`
(many FCNs in one program) and `lrbook.ray_sweep.run_sweep_ray` (a Ray cluster).

Each finished run is written to the store the moment it ends, so a stopped sweep loses only the
runs in flight; running the same sweep again trains only what is missing. Several processes,
hosts or users sharing a store never train the same run twice: each run is claimed first
(`ResultStore.claim`). Ctrl-C or SIGTERM stops a sweep within seconds: running runs are abandoned
and their claims released, pending ones are not started, and `SweepInterrupted` says what finished.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field

from .config import RunConfig, validate
from .claims import ClaimBlocked
from .store import ResultStore, stands_for
from .vocabulary import STREAMED


@dataclass
class SweepReport:
    """What a sweep did with each run id of its grid."""

    trained: list[str] = field(default_factory=list)
    already_stored: list[str] = field(default_factory=list)
    claimed_elsewhere: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # run_id -> traceback
    blocked: dict[str, str] = field(default_factory=dict)  # run_id -> why it could not be claimed
    stopped: list[str] = field(default_factory=list)  # abandoned or not started when the sweep was stopped

    def note(self, run_id: str, outcome: str) -> None:
        """File `run_id` under what `run_one` returned for it."""
        if outcome == "claimed":
            self.claimed_elsewhere.append(run_id)
        elif outcome == "stored":
            self.already_stored.append(run_id)
        elif outcome.startswith("blocked:"):
            self.blocked[run_id] = outcome.split(":", 1)[1].strip()
        else:
            self.trained.append(run_id)

    @property
    def complete(self) -> bool:
        """Whether every run of the grid is now stored."""
        return not (self.claimed_elsewhere or self.failed or self.blocked or self.stopped)

    def __str__(self):
        text = (f"{len(self.trained)} trained, {len(self.already_stored)} already stored, "
                f"{len(self.claimed_elsewhere)} running elsewhere, {len(self.failed)} failed")
        if self.blocked:
            text += f", {len(self.blocked)} blocked"
        if self.stopped:
            text += f", {len(self.stopped)} stopped"
        return text

    def explain(self) -> str:
        """The runs that are not stored, each with why, and what to do."""
        lines = []
        if self.claimed_elsewhere:
            lines.append(f"running elsewhere (a live claim; a claim whose heartbeat stops is taken over): "
                         f"{', '.join(self.claimed_elsewhere)}")
        lines += [f"blocked {rid}: {why}" for rid, why in self.blocked.items()]
        lines += [f"failed {rid}: {tb.strip().splitlines()[-1] if tb.strip() else 'no message'}"
                  for rid, tb in self.failed.items()]
        if self.stopped:
            lines.append(f"stopped before finishing: {', '.join(self.stopped)}")
        if lines:
            lines.append("Run the same sweep again to train what is missing; stored runs are never trained again.")
        return "\n".join(lines)


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by Ctrl-C or SIGTERM; `report` says what finished, `signal` which signal."""

    def __init__(self, report: SweepReport, signum: int = signal.SIGINT):
        self.report, self.signal = report, signum
        super().__init__(f"sweep stopped by {signal.Signals(signum).name}: {report}; the runs in flight were "
                         "abandoned and their claims released. Run the same sweep again to resume: it trains "
                         "only what is missing.")


class SweepFailed(RuntimeError):
    """Some runs of a sweep raised an error; `report` holds every traceback."""

    def __init__(self, report: SweepReport):
        self.report = report
        first = next(iter(report.failed.values()))
        super().__init__(f"{len(report.failed)} run(s) failed ({report}); first error:\n{first}")


# -- the core -------------------------------------------------------------------------------------

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


def plan(configs, store: ResultStore) -> tuple[SweepReport, list[RunConfig]]:
    """Validate `configs`, remove what interrupted sweeps left in the store (stale claims, temporary
    files), and return the report so far (what is already stored) and the configs to train."""
    store.check_writable()
    configs = [validate(c) for c in configs]
    store.clean()
    return SweepReport(already_stored=already_stored(configs, store)), missing(configs, store)


def finish(report: SweepReport) -> SweepReport:
    """Raise `SweepFailed` if a run raised an error, else return `report`."""
    if report.failed:
        raise SweepFailed(report)
    return report


def run_one(cfg_dict: dict, store_root: str, device: str, data_root, threads: int | None = None,
            progress: bool = False, owner: str | None = None) -> tuple[str, str]:
    """Claim, train, store and release one run; returns (run_id, outcome): the record's status, or
    "stored" (another process stored it meanwhile), "claimed" (another process holds it) or
    "blocked: <why>". `owner` lets a retried task take over its own dead attempt's claim."""
    import torch

    from .experiment import run_experiment

    if threads:
        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(cfg_dict)
    store = ResultStore(store_root)
    if not missing([cfg], store):  # stored since the sweep looked (e.g. by another process)
        return cfg.run_id, "stored"
    try:
        with store.claimed(cfg.run_id, owner) as ok:
            if not ok:
                return cfg.run_id, "stored" if store.has(cfg.run_id) else "claimed"
            if cfg.dataset in STREAMED:  # too large for memory: streamed, in this one process
                from .distributed import train_streamed

                record = train_streamed(cfg, store=store, data_root=data_root, device=device, progress=progress,
                                        claimed=True)
            else:
                record = run_experiment(cfg, store=store, device=device, data_root=data_root, progress=progress)
            return cfg.run_id, record["status"]
    except ClaimBlocked as e:
        return cfg.run_id, f"blocked: {e}"


# -- launcher: this process, or one spawned process per run --------------------------------------

class _Stop(BaseException):
    """Raised by a SIGTERM handler in the sweep's main thread, so that it unwinds like Ctrl-C
    (a BaseException, so that no `except Exception` in training swallows it)."""


@contextmanager
def _sigterm_unwinds():
    """In the main thread, turn SIGTERM into `_Stop` while the sweep runs (restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Stop()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_sweep(configs, store: ResultStore | None = None, workers: int = 1, device: str = "auto",
              data_root=None, progress: bool = True) -> SweepReport:
    """Train every config the store lacks; `workers` > 1 runs that many at once, each in a spawned
    process with cpu_count // workers torch threads. Returns what happened to each run; raises
    `SweepFailed` if a run raised an error and `SweepInterrupted` on Ctrl-C or SIGTERM."""
    from tqdm.auto import tqdm

    store = ResultStore() if store is None else store
    report, todo = plan(configs, store)
    if not todo:
        return report
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    bar = tqdm(total=len(todo), desc="sweep", disable=not progress)
    try:
        with _sigterm_unwinds():
            if workers <= 1:
                _run_here(todo, store, device, data_root, progress, report, bar)
            else:
                _run_in_processes(todo, store, device, data_root, threads, workers, report, bar)
    finally:
        bar.close()
    return finish(report)


def _run_here(todo, store, device, data_root, progress, report, bar) -> None:
    for i, c in enumerate(todo):
        try:
            report.note(*run_one(c.to_dict(), str(store.root), device, data_root, None, progress))
        except (KeyboardInterrupt, _Stop) as e:  # run_one's claim is released as the stack unwinds
            report.stopped += [x.run_id for x in todo[i:]]
            raise SweepInterrupted(report, signal.SIGTERM if isinstance(e, _Stop) else signal.SIGINT) from None
        except Exception:
            report.failed[c.run_id] = traceback.format_exc()
        bar.update()


def _worker(conn, parent: int, args: tuple) -> None:
    """A spawned worker: train one run, send (outcome, error) to the controller."""
    from .claims import release_all

    _exit_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the controller decides

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the parent watch may send a second one
        raise SystemExit(128 + signum)  # unwinds run_one: its claim is released

    signal.signal(signal.SIGTERM, stop)
    try:
        message = (run_one(*args)[1], None)
    except SystemExit:
        release_all()
        raise
    except BaseException:
        message = (None, traceback.format_exc())
    try:
        conn.send(message)
    except OSError:  # the controller is gone: there is nobody to tell
        pass
    finally:
        conn.close()


def _exit_with_parent(parent: int) -> None:
    """Make this worker stop when the controller dies, even by SIGKILL: on Linux the kernel sends
    SIGTERM (prctl PR_SET_PDEATHSIG); everywhere, a thread notices the parent is gone."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != parent:  # died before the watch began
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="lrbook-parent-watch", daemon=True).start()


def _run_in_processes(todo, store, device, data_root, threads, workers, report, bar) -> None:
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    queue, running = list(todo), {}  # sentinel -> (process, connection, config)
    try:
        while queue or running:
            while queue and len(running) < workers:
                c = queue.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                args = (c.to_dict(), str(store.root), device, data_root, threads, False)
                p = ctx.Process(target=_worker, args=(send, os.getpid(), args), name=f"lrbook-{c.run_id}", daemon=True)
                p.start()
                send.close()
                running[p.sentinel] = (p, recv, c)
            for sentinel in wait(list(running), timeout=1.0):
                p, recv, c = running.pop(sentinel)
                p.join()
                outcome, error = recv.recv() if recv.poll() else (None, None)
                recv.close()
                if outcome is not None:
                    report.note(c.run_id, outcome)
                else:
                    report.failed[c.run_id] = error or (f"worker process died with exit code {p.exitcode} "
                                                        "(killed? out of memory?)")
                bar.update()
    except (KeyboardInterrupt, _Stop) as e:
        report.stopped += [c.run_id for _, _, c in running.values()] + [c.run_id for c in queue]
        _stop_workers([p for p, _, _ in running.values()], store)
        raise SweepInterrupted(report, signal.SIGTERM if isinstance(e, _Stop) else signal.SIGINT) from None


def _stop_workers(procs, store: ResultStore, grace_s: float = 10.0) -> None:
    """SIGTERM every worker (each releases its claim as it unwinds), SIGKILL what is left after
    `grace_s` or at a second Ctrl-C, then remove the claims of killed workers."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace_s
    try:
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:  # a second Ctrl-C: do not wait
        pass
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    store.clean()  # claims of killed workers name a dead pid on this host: stale at once
