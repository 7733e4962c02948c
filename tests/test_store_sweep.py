"""lrbook.store and lrbook.sweep: atomic records, claims, resumable sweeps."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lrbook import sweep as sweep_mod
from lrbook.config import make_config
from lrbook.store import ResultStore, StoreError, default_store_path, records_to_frame
from lrbook.sweep import missing, run_sweep

REPO = Path(__file__).resolve().parents[1]


def fast_cfg(lr=0.05, seed=0, **over):
    """A smoke parity run that takes a fraction of a second."""
    kw = dict(max_epochs=3, attribution_n=0, eval_n=50)
    kw.update(over)
    return make_config("parity", "fcn", lr=lr, seed=seed, scale="smoke", **kw)


def fake_record(cfg, status="converged", **metrics):
    return {"run_id": cfg.run_id, "config": cfg.to_dict(), "status": status, "epochs": 3,
            "metrics": metrics or {"test_acc": 0.5}}


def minimal_record(run_id, **extra):
    """A valid record under an arbitrary id (for tests of the store's mechanics)."""
    return {"run_id": run_id, "config": {"dataset": "parity", "model": "fcn", "lr": 0.1, "seed": 0, "scale": "smoke"},
            "status": "converged", "metrics": {}, **extra}


def files_in(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


# ------------------------------------------------------------------------------------ store


def test_session_store_is_not_the_checkout_results():
    path = Path(os.environ["LRBOOK_STORE"]).resolve()
    assert REPO / "results" not in (path, *path.parents)
    assert default_store_path() == Path(os.environ["LRBOOK_STORE"])
    assert ResultStore().root == Path(os.environ["LRBOOK_STORE"])


def test_put_get_round_trip_cleans_values(tmp_store):
    rec = {**minimal_record("abc123"), "nan": float("nan"), "inf": float("-inf"),
           "np": np.float32(0.25), "npint": np.int64(7), "tensor": torch.tensor(1.5), "tup": (1, 2.0),
           "nested": {"curve": [1.0, float("nan"), 3.0], 4: "int key"}}
    path = tmp_store.put(rec)
    assert path == tmp_store.root / "runs" / "abc123.json" and path.is_file()
    got = tmp_store.get("abc123")
    assert got == {**minimal_record("abc123"), "schema_version": 2, "nan": None, "inf": None, "np": 0.25, "npint": 7,
                   "tensor": 1.5, "tup": [1, 2.0], "nested": {"curve": [1.0, None, 3.0], "4": "int key"}}
    json.loads(path.read_text())  # strict JSON: no NaN tokens
    assert "NaN" not in path.read_text()
    assert tmp_store.has("abc123") and not tmp_store.has("other")
    assert len(tmp_store) == 1 and [r["run_id"] for r in tmp_store.records()] == ["abc123"]


def test_put_leaves_no_temporary_files(tmp_store):
    for i in range(3):
        tmp_store.put(minimal_record(f"r{i}", v=i))
    tmp_store.put(minimal_record("r1", v=10))  # overwrite
    assert files_in(tmp_store.runs) == ["r0.json", "r1.json", "r2.json"]
    assert tmp_store.get("r1")["v"] == 10


def test_failed_put_keeps_old_record_and_leaves_nothing_behind(tmp_store):
    tmp_store.put(minimal_record("r", v=1))
    with pytest.raises(TypeError):
        tmp_store.put(minimal_record("r", v=object()))  # not JSON serialisable
    assert files_in(tmp_store.runs) == ["r.json"]
    assert tmp_store.get("r")["v"] == 1


def test_empty_store():
    store = ResultStore(Path("/nonexistent/lrbook-store"))
    assert len(store) == 0 and list(store.records()) == [] and len(store.to_frame()) == 0


def test_records_to_frame_columns_and_filters(tmp_store):
    a, b = fast_cfg(lr=0.1), fast_cfg(lr=0.2, seed=1)
    tmp_store.put({**fake_record(a, test_acc=0.7, prunability=0.9), "metrics": {"test_acc": 0.7, "prunability": 0.9,
                                                                                "curve": [1, 2], "d": {"x": 1}},
                   "provenance": {"seconds": 1.5, "device": "cpu (x86_64, 1 threads)"}})
    tmp_store.put(fake_record(b, status="diverged") | {"metrics": None})
    df = tmp_store.to_frame()
    assert len(df) == 2
    for col in ("dataset", "model", "lr", "seed", "scale", "max_epochs", "data.n_train", "data.bc_ratio",
                "model.width", "model.depth", "test_acc", "prunability", "run_id", "status", "epochs",
                "seconds", "device"):
        assert col in df.columns, col
    assert "curve" not in df.columns and "d" not in df.columns
    assert "dataset_params" not in df.columns
    row = df.set_index("run_id").loc[a.run_id]
    assert (row.lr, row.status, row.test_acc, row["data.n_train"], row.seconds) == (0.1, "converged", 0.7, 400, 1.5)
    assert math.isnan(df.set_index("run_id").loc[b.run_id, "test_acc"])
    assert list(tmp_store.to_frame(status="diverged").run_id) == [b.run_id]
    assert list(tmp_store.to_frame(lr=0.1, seed=0).run_id) == [a.run_id]
    assert len(tmp_store.to_frame(no_such_column=1)) == 0
    assert len(records_to_frame([])) == 0


# ------------------------------------------------------------------------------------ claims


def _lock(store, run_id):
    return store.runs / f"{run_id}.lock"


def _dead_pid() -> int:
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(out.stdout)


def _holder(lock):
    info = json.loads(lock.read_text())
    return info["host"], info["pid"]


def _age(path, seconds):
    """Set the file's modification time (a claim's heartbeat) `seconds` into the past."""
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t))


def test_claim_and_release(tmp_store):
    assert tmp_store.claim("run1")
    lock = _lock(tmp_store, "run1")
    assert _holder(lock) == (socket.gethostname(), os.getpid())
    assert lock.stat().st_mode & 0o044, "readable by the other users of a shared store"
    assert not tmp_store.claim("run1"), "a live process's claim blocks"
    tmp_store.release("run1")
    assert not lock.exists()
    assert tmp_store.claim("run1")
    tmp_store.release("run1")
    assert files_in(tmp_store.runs) == []


def test_claim_of_dead_process_is_taken_over(tmp_store):
    tmp_store.runs.mkdir(parents=True)
    lock = _lock(tmp_store, "run2")
    lock.write_text(f"{socket.gethostname()} {_dead_pid()}")  # the claim format before heartbeats
    assert tmp_store.claim("run2")
    assert _holder(lock) == (socket.gethostname(), os.getpid())


def test_claim_of_a_reused_pid_is_taken_over(tmp_store):
    """The pid is alive, but it is another process than the one that claimed (its start differs)."""
    tmp_store.runs.mkdir(parents=True)
    lock = _lock(tmp_store, "run2b")
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "pid_start": "1"}))
    assert tmp_store.claim("run2b")


def test_claim_of_an_exited_unreaped_process_is_taken_over(tmp_store):
    """A process that exited but that its parent has not reaped yet (a zombie, as a killed Ray worker
    is until its raylet notices) still answers signal 0 and keeps its start time: its claim is stale."""
    from lrbook.claims import _process_start

    tmp_store.runs.mkdir(parents=True)
    lock = _lock(tmp_store, "run2c")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(200):  # until it has exited (not waited for: it stays a zombie)
            if Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child did not exit within 10 s")
        os.kill(proc.pid, 0)  # still there for signal 0
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": proc.pid,
                                    "pid_start": _process_start(proc.pid)}))
        assert tmp_store.claim("run2c")
        tmp_store.release("run2c")
    finally:
        proc.wait()


def test_claim_of_live_other_process_blocks(tmp_store):
    tmp_store.runs.mkdir(parents=True)
    lock = _lock(tmp_store, "run3")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{socket.gethostname()} {proc.pid}")
        assert not tmp_store.claim("run3")
        assert lock.read_text() == f"{socket.gethostname()} {proc.pid}"
    finally:
        proc.kill()
        proc.wait()
    assert tmp_store.claim("run3"), "once that process is gone its claim is stale"


def test_claim_from_another_host_blocks_until_its_heartbeat_stops(tmp_store, monkeypatch):
    tmp_store.runs.mkdir(parents=True)
    lock = _lock(tmp_store, "run4")
    lock.write_text(json.dumps({"host": f"{socket.gethostname()}-elsewhere", "pid": 1}))
    assert not tmp_store.claim("run4")
    monkeypatch.setenv("LRBOOK_CLAIM_TIMEOUT", "100")
    _age(lock, 99)
    assert not tmp_store.claim("run4"), "a heartbeat 99 s old is alive with a 100 s timeout"
    _age(lock, 2)
    assert tmp_store.claim("run4"), "a claim whose heartbeat stopped is stale, whatever host wrote it"
    assert _holder(lock) == (socket.gethostname(), os.getpid())


def test_a_held_claim_beats(tmp_store, monkeypatch):
    import lrbook.claims

    monkeypatch.setattr(lrbook.claims, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(lrbook.claims, "HEARTBEAT", lrbook.claims.Heartbeat())
    assert tmp_store.claim("run6")
    lock = _lock(tmp_store, "run6")
    _age(lock, 1000)
    old = lock.stat().st_mtime
    import time

    time.sleep(0.3)
    assert lock.stat().st_mtime > old + 900, "the heartbeat touched the claim"
    tmp_store.release("run6")


def test_a_stale_claim_is_taken_over_by_one_of_two_racing_processes(tmp_store):
    """Both judged the same claim stale; only the first takeover removes it, the second finds a
    different claim in its place and backs off."""
    from lrbook.claims import take_over

    tmp_store.runs.mkdir(parents=True)
    lock = _lock(tmp_store, "run7")
    lock.write_text("ghost 1")
    seen = lock.stat()
    first, second = tmp_store.runs / "a.claim", tmp_store.runs / "b.claim"
    first.write_text("first")
    second.write_text("second")
    assert take_over(lock, seen, str(first))
    assert not take_over(lock, seen, str(second))
    assert lock.read_text() == "first"
    assert not (tmp_store.runs / ".run7.takeover").exists()


def test_release_leaves_a_claim_taken_over_by_another_process(tmp_store):
    assert tmp_store.claim("run8")
    lock = _lock(tmp_store, "run8")
    lock.unlink()
    lock.write_text("someone else 1")  # taken over after this process stalled
    assert not tmp_store.release("run8")
    assert lock.read_text() == "someone else 1"


def test_stored_run_cannot_be_claimed_and_its_leftover_lock_is_removed(tmp_store):
    c = fast_cfg(lr=0.011)
    tmp_store.put(fake_record(c))
    assert not tmp_store.claim(c.run_id)
    assert not _lock(tmp_store, c.run_id).exists()
    _lock(tmp_store, c.run_id).write_text(f"{socket.gethostname()} {_dead_pid()}")  # killed between put and release
    assert not tmp_store.claim(c.run_id)
    assert files_in(tmp_store.runs) == [f"{c.run_id}.json"]


def test_claim_being_written_is_not_taken_over(tmp_store):
    tmp_store.runs.mkdir(parents=True)
    _lock(tmp_store, "run5").touch()  # another process between os.open(O_EXCL) and its write
    assert not tmp_store.claim("run5")


def test_clean_removes_what_interrupted_processes_left(tmp_store):
    tmp_store.runs.mkdir(parents=True)
    dead = _lock(tmp_store, "dead")
    dead.write_text(f"{socket.gethostname()} {_dead_pid()}")
    live = _lock(tmp_store, "live")
    live.write_text(f"{socket.gethostname()} {os.getpid()}")
    old_tmp, new_tmp = tmp_store.runs / ".abc-x1.tmp", tmp_store.runs / ".abc-x2.tmp"
    old_tmp.write_text("{")
    new_tmp.write_text("{")  # maybe another process writing right now
    _age(old_tmp, 3600)
    removed = tmp_store.clean()
    assert sorted(p.name for p in removed) == [".abc-x1.tmp", "dead.lock"]
    assert files_in(tmp_store.runs) == [".abc-x2.tmp", "live.lock"]


def test_sticky_shared_folder_blocks_with_a_message(tmp_store, monkeypatch):
    """Another user's stale claim in a sticky folder cannot be removed: the sweep says so."""
    from pathlib import Path as P

    tmp_store.runs.mkdir(parents=True)
    c = fast_cfg(lr=0.012)
    lock = _lock(tmp_store, c.run_id)
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    _age(lock, 10_000)
    real_unlink = P.unlink

    def sticky_unlink(self, missing_ok=False):
        if self == lock:
            raise PermissionError(1, "Operation not permitted")
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(P, "unlink", sticky_unlink)
    rep = run_sweep([c], tmp_store, device="cpu", progress=False)
    assert list(rep.blocked) == [c.run_id] and "another user" in rep.blocked[c.run_id]
    assert not rep.complete and "blocked" in rep.explain()


# ------------------------------------------------------------------------------------ bad records


BAD_RECORDS = {
    "truncated": '{"run_id": "x", "config": {"data',
    "empty": "",
    "no metrics": None,  # filled in the test: a converged run without metrics
    "not an object": "[1, 2]",
}


@pytest.mark.parametrize("kind", list(BAD_RECORDS))
def test_a_bad_record_is_named_skipped_and_its_run_trained_again(tmp_store, kind):
    from lrbook.record import BadRecord
    from lrbook.store import BadRecordWarning

    good, bad = fast_cfg(lr=0.021), fast_cfg(lr=0.022)
    tmp_store.put(fake_record(good))
    text = BAD_RECORDS[kind]
    if text is None:
        text = json.dumps({k: v for k, v in fake_record(bad).items() if k != "metrics"})
    tmp_store.runs.joinpath(f"{bad.run_id}.json").write_text(text)
    with pytest.warns(BadRecordWarning, match=f"{bad.run_id}.json"):
        assert [r["run_id"] for r in tmp_store.records()] == [good.run_id]
    assert [b.path.name for b in tmp_store.bad_records()] == [f"{bad.run_id}.json"]
    with pytest.raises(BadRecord, match=f"{bad.run_id}.json"):
        tmp_store.get(bad.run_id)
    assert not tmp_store.has(bad.run_id) and tmp_store.has(good.run_id)
    with pytest.warns(BadRecordWarning):
        assert list(tmp_store.to_frame().run_id) == [good.run_id]
    with pytest.warns(BadRecordWarning):
        rep = run_sweep([good, bad], tmp_store, device="cpu", progress=False)
    assert rep.trained == [bad.run_id] and rep.already_stored == [good.run_id]
    assert tmp_store.get(bad.run_id)["metrics"] and tmp_store.bad_records() == []


def test_records_are_versioned_and_old_ones_upgraded(tmp_store):
    from lrbook.record import SCHEMA_VERSION

    c = fast_cfg(lr=0.023)
    tmp_store.put(fake_record(c))  # no schema_version: a version-1 record
    assert tmp_store.get(c.run_id)["schema_version"] == SCHEMA_VERSION
    run_sweep([fast_cfg(lr=0.024)], tmp_store, device="cpu", progress=False)
    raw = json.loads(tmp_store.path(fast_cfg(lr=0.024).run_id).read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    tmp_store.put(fake_record(c) | {"schema_version": SCHEMA_VERSION + 1})
    assert "unknown schema_version" in str(tmp_store.bad_records()[0])


# ------------------------------------------------------------------------------------ sweeps


def test_sweep_trains_missing_only(tmp_store):
    cfgs = [fast_cfg(lr=0.05), fast_cfg(lr=0.1)]
    rep = run_sweep(cfgs, tmp_store, device="cpu", progress=False)
    assert sorted(rep.trained) == sorted(c.run_id for c in cfgs)
    assert rep.already_stored == [] and rep.failed == {} and rep.claimed_elsewhere == []
    assert files_in(tmp_store.runs) == sorted(f"{c.run_id}.json" for c in cfgs), "no lock or temp files left"
    stamps = {c.run_id: (tmp_store.path(c.run_id).stat().st_mtime_ns, tmp_store.path(c.run_id).read_text())
              for c in cfgs}
    for c in cfgs:
        rec = tmp_store.get(c.run_id)
        assert rec["config"] == c.to_dict() and rec["status"] in ("converged", "max_epochs")

    again = run_sweep(cfgs, tmp_store, device="cpu", progress=False)
    assert again.trained == [] and sorted(again.already_stored) == sorted(c.run_id for c in cfgs)
    assert again.claimed_elsewhere == [] and again.failed == {}
    assert str(again) == "0 trained, 2 already stored, 0 running elsewhere, 0 failed"
    for c in cfgs:
        p = tmp_store.path(c.run_id)
        assert (p.stat().st_mtime_ns, p.read_text()) == stamps[c.run_id], "stored records are not rewritten"


def test_sweep_resumes(tmp_store):
    cfgs = [fast_cfg(lr=lr) for lr in (0.02, 0.05, 0.1)]
    tmp_store.put(fake_record(cfgs[1], test_acc=0.123))
    assert [c.run_id for c in missing(cfgs, tmp_store)] == [cfgs[0].run_id, cfgs[2].run_id]
    rep = run_sweep(cfgs, tmp_store, device="cpu", progress=False)
    assert sorted(rep.trained) == sorted([cfgs[0].run_id, cfgs[2].run_id])
    assert rep.already_stored == [cfgs[1].run_id]
    assert tmp_store.get(cfgs[1].run_id)["metrics"] == {"test_acc": 0.123}, "the stored run is kept"
    assert len(tmp_store) == 3


def test_sweep_deduplicates(tmp_store):
    c = fast_cfg(lr=0.07)
    rep = run_sweep([c, c], tmp_store, device="cpu", progress=False)
    assert rep.trained == [c.run_id] and len(tmp_store) == 1


def test_sweep_skips_runs_claimed_elsewhere(tmp_store):
    c = fast_cfg(lr=0.03)
    tmp_store.runs.mkdir(parents=True)
    lock = _lock(tmp_store, c.run_id)
    lock.write_text(f"{socket.gethostname()} {os.getpid()}")
    rep = run_sweep([c], tmp_store, device="cpu", progress=False)
    assert rep.claimed_elsewhere == [c.run_id] and rep.trained == [] and not rep.complete
    assert c.run_id in rep.explain() and "running elsewhere" in rep.explain()
    assert not tmp_store.has(c.run_id) and lock.exists(), "the other worker's claim is left alone"


def test_sweep_reports_failures_and_releases_claims(tmp_store, monkeypatch):
    import lrbook.experiment

    def boom(*a, **k):
        raise ValueError("synthetic failure 42")

    monkeypatch.setattr(lrbook.experiment, "run_experiment", boom)
    c = fast_cfg(lr=0.04)
    with pytest.raises(RuntimeError, match="1 run\\(s\\) failed") as exc:
        run_sweep([c], tmp_store, device="cpu", progress=False)
    assert "synthetic failure 42" in str(exc.value)
    assert files_in(tmp_store.runs) == [], "no record, no leftover claim"


def test_sweep_with_two_worker_processes(tmp_store):
    cfgs = [fast_cfg(lr=0.05, seed=s, max_epochs=2) for s in (0, 1)]
    rep = run_sweep(cfgs, tmp_store, workers=2, device="cpu", progress=False)
    assert sorted(rep.trained) == sorted(c.run_id for c in cfgs) and rep.failed == {}
    assert files_in(tmp_store.runs) == sorted(f"{c.run_id}.json" for c in cfgs)
    for c in cfgs:
        rec = tmp_store.get(c.run_id)
        assert rec["status"] == "max_epochs" and rec["epochs"] == 2
        threads = max(1, (os.cpu_count() or 1) // 2)  # each worker gets cpu_count // workers threads
        assert f"{threads} threads" in rec["provenance"]["device"]


def _unwritable_store(tmp_path, kind):
    if kind == "read-only dir":
        if os.geteuid() == 0:
            pytest.skip("root ignores directory permissions")
        root = tmp_path / "ro"
        root.mkdir()
        root.chmod(0o500)
        return ResultStore(root / "store")
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    return ResultStore(afile / "store")


@pytest.mark.parametrize("kind", ["under a regular file", "read-only dir"])
def test_unwritable_store_fails_before_training(tmp_path, monkeypatch, kind):
    import lrbook.experiment

    store = _unwritable_store(tmp_path, kind)
    calls = []
    monkeypatch.setattr(sweep_mod, "run_one", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(lrbook.experiment, "train", lambda *a, **k: calls.append(a))
    c = fast_cfg(lr=0.06)
    try:
        with pytest.raises(StoreError, match="not writable.*LRBOOK_STORE"):
            run_sweep([c], store, device="cpu", progress=False)
        with pytest.raises(StoreError):
            lrbook.experiment.run_experiment(c, store=store, device="cpu")
        with pytest.raises(StoreError):
            store.put(minimal_record("x"))
    finally:
        if kind == "read-only dir":
            (tmp_path / "ro").chmod(0o700)
    assert calls == [], "nothing was trained"
    assert not store.runs.exists() and len(store) == 0
    if kind != "read-only dir":
        assert (tmp_path / "afile").read_text() == "not a folder"


def test_runs_differing_only_in_logging_fields_count_once(tmp_store):
    """A run re-trained with neuron probes is the same training run: the frame keeps one."""
    from lrbook import make_config

    plain = make_config("parity", lr=0.1, seed=0, scale="smoke")
    probed = make_config("parity", lr=0.1, seed=0, scale="smoke", neuron_probes=True)
    other_seed = make_config("parity", lr=0.1, seed=1, scale="smoke")
    fewer_probes = make_config("parity", lr=0.1, seed=0, scale="smoke", attribution_n=4)
    for cfg in (plain, probed, other_seed, fewer_probes):
        tmp_store.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": "converged",
                       "metrics": {"test_acc": 0.5}})
    assert len({plain.run_id, probed.run_id, other_seed.run_id, fewer_probes.run_id}) == 4
    df = tmp_store.to_frame()
    assert len(df) == 2 and other_seed.run_id in set(df.run_id)
    assert probed.run_id not in set(df.run_id)  # a record with fewer probe fields set is kept
    assert len(tmp_store.to_frame(dedupe=False)) == 4


def test_a_bf16_replica_of_a_run_is_not_an_extra_seed(tmp_store):
    """Speed options (bf16, channels_last, compile) change the numeric path, not the experiment: the
    frame keeps the paper's fp32 run of each (lr, seed), or the replica where it is the only one."""
    from lrbook import make_config
    from lrbook.sweep import missing

    plain = make_config("parity", lr=0.1, seed=0, scale="smoke")
    bf16 = make_config("parity", lr=0.1, seed=0, scale="smoke", precision="bf16")
    compiled_only = make_config("parity", lr=0.1, seed=1, scale="smoke", compile=True, compile_mode="reduce-overhead")
    for cfg in (bf16, plain, compiled_only):
        tmp_store.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": "converged",
                       "metrics": {"test_acc": 0.5}})
    df = tmp_store.to_frame()
    assert sorted(df.run_id) == sorted([plain.run_id, compiled_only.run_id])
    assert len(tmp_store.to_frame(dedupe=False)) == 3
    tmp_store.path(plain.run_id).unlink()
    assert [c.run_id for c in missing([plain], tmp_store)] == [plain.run_id]  # asked for fp32: trains it


def test_a_run_stored_with_more_logging_stands_for_the_plain_one(tmp_store):
    """A sweep never retrains a run that is stored with extra logging (same training run), but does
    train a run whose requested logging the stored record lacks."""
    from lrbook import make_config
    from lrbook.sweep import already_stored, missing

    plain = make_config("parity", lr=0.1, seed=0, scale="smoke")
    probed = make_config("parity", lr=0.1, seed=0, scale="smoke", neuron_probes=True)
    other_lr = make_config("parity", lr=0.2, seed=0, scale="smoke")
    tmp_store.put({"run_id": probed.run_id, "config": probed.to_dict(), "status": "converged", "metrics": {}})
    assert [c.run_id for c in missing([plain, probed, other_lr], tmp_store)] == [other_lr.run_id]
    assert already_stored([plain, probed, other_lr], tmp_store) == [plain.run_id, probed.run_id]

    tmp_store.path(probed.run_id).unlink()
    tmp_store.put({"run_id": plain.run_id, "config": plain.to_dict(), "status": "converged", "metrics": {}})
    assert [c.run_id for c in missing([probed], tmp_store)] == [probed.run_id]  # the probes are wanted


def test_check_lists_bad_records_and_stale_claims(tmp_store):
    good = fast_cfg(lr=0.031)
    tmp_store.put(fake_record(good))
    assert tmp_store.check() == []
    tmp_store.runs.joinpath("0123456789abcdef.json").write_text("{")
    _lock(tmp_store, "feedfeedfeedfeed").write_text(f"{socket.gethostname()} {_dead_pid()}")
    problems = tmp_store.check()
    assert len(problems) == 2
    assert problems[0].startswith("bad record 0123456789abcdef.json: not valid JSON")
    assert problems[1].startswith("stale claim feedfeedfeedfeed.lock")


def _cli(*args, store):
    env = {**os.environ, "LRBOOK_STORE": str(store.root)}
    return subprocess.run([sys.executable, "-m", "lrbook", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_status_check_names_a_bad_record_and_clean_removes_a_dead_claim(tmp_store):
    good = fast_cfg(lr=0.041)
    tmp_store.put(fake_record(good))
    ok = _cli("status", "--check", store=tmp_store)
    assert ok.returncode == 0 and ok.stdout.startswith("1 valid records, 0 bad, 0 stale claims")
    tmp_store.runs.joinpath("0123456789abcdef.json").write_text("")
    _lock(tmp_store, "feedfeedfeedfeed").write_text(f"{socket.gethostname()} {_dead_pid()}")
    bad = _cli("status", "--check", store=tmp_store)
    assert bad.returncode == 1, bad.stderr
    assert "bad record 0123456789abcdef.json: empty file" in bad.stdout and "stale claim feedfeedfeedfeed" in bad.stdout
    status = _cli("status", store=tmp_store)  # the table still prints, with a warning naming the file
    assert status.returncode == 0 and "Fig. 3" in status.stdout and "0123456789abcdef.json" in status.stderr
    cleaned = _cli("status", "--clean", store=tmp_store)
    assert "removed feedfeedfeedfeed.lock" in cleaned.stdout and not _lock(tmp_store, "feedfeedfeedfeed").exists()


def test_sweep_cli_exits_3_and_says_which_runs_another_process_holds(tmp_store):
    c = make_config("parity", "fcn", lr=0.05, seed=0, scale="smoke")
    tmp_store.runs.mkdir(parents=True)
    _lock(tmp_store, c.run_id).write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    out = _cli("sweep", "parity", "--lrs", "0.05", "--seeds", "0", "--scale", "smoke", store=tmp_store)
    assert out.returncode == 3, out.stderr
    assert "0 trained, 0 already stored, 1 running elsewhere" in out.stdout
    assert c.run_id in out.stderr and "Run the same sweep again" in out.stderr


def test_the_frame_derives_csi_minus_bsi(tmp_store):
    a, b = fast_cfg(lr=0.051), fast_cfg(lr=0.052)
    tmp_store.put(fake_record(a, csi=0.5, bsi=0.2))
    tmp_store.put(fake_record(b, csi=0.5))
    df = tmp_store.to_frame().set_index("run_id")
    assert np.isclose(df.loc[a.run_id, "csi_minus_bsi"], 0.3) and np.isnan(df.loc[b.run_id, "csi_minus_bsi"])
