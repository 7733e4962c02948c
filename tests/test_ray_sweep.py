"""lrbook.ray_sweep: the sweep on (local) Ray writes the same records as local runs, resumes, and
survives a worker killed mid-run (retry, stale claim taken over). One local Ray (2 CPUs) for the
module: starting Ray takes seconds."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')

from lrbook.config import make_config  # noqa: E402
from lrbook.experiment import run_experiment  # noqa: E402
from lrbook.ray_sweep import _check_device, run_sweep_ray  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cfg(lr=0.05, seed=0):
    return make_config("parity", "fcn", lr=lr, seed=seed, scale="smoke", max_epochs=2)


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def close(a, b, tol=1e-6):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol * max(1.0, abs(a))
    return a == b


# ----------------------------------------------------------------------- no Ray needed


def test_importing_the_module_does_not_import_ray():
    code = "import sys, lrbook.ray_sweep; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_missing_ray_says_how_to_install(monkeypatch, tmp_store):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        run_sweep_ray([cfg()], store=tmp_store, progress=False)
    assert not tmp_store.has(cfg().run_id)


def test_device_follows_the_ray_gpu_request():
    assert _check_device("auto", 0.0) == "cpu"  # no GPU asked of Ray: don't touch one
    assert _check_device("auto", 0.25) == "auto" and _check_device("cuda", 0.5) == "cuda"
    assert _check_device("cpu", 0.0) == "cpu"
    with pytest.raises(ValueError, match="gpus_per_run > 0"):
        _check_device("cuda", 0.0)
    with pytest.raises(ValueError, match="Ray picks"):
        _check_device("cuda:1", 1.0)


# ----------------------------------------------------------------------- local Ray


def test_ray_sweep_stores_the_same_records_as_local_runs_and_resumes(local_ray, tmp_store):
    configs = [cfg(lr=0.05, seed=0), cfg(lr=0.2, seed=0), cfg(lr=0.05, seed=1)]
    report = run_sweep_ray(configs, store=tmp_store, progress=False)
    ids = [c.run_id for c in configs]
    assert sorted(report.trained) == sorted(ids) and not report.failed and not report.claimed_elsewhere
    assert len(tmp_store) == 3 and not list(tmp_store.runs.glob("*.lock"))
    assert not list(tmp_store.runs.glob(".*"))  # no claim notes or temporary files left

    for c in configs:  # same seed, same CPU, one torch thread: the worker's run is the local run
        stored, local = tmp_store.get(c.run_id), run_experiment(c)
        assert stored["config"] == c.to_dict() and stored["status"] == local["status"]
        assert stored["epochs"] == local["epochs"] == 2
        assert stored["metrics"]["test_acc"] == pytest.approx(local["metrics"]["test_acc"], abs=1e-6)
        assert close(stored["curves"]["per_epoch"]["loss"], local["curves"]["per_epoch"]["loss"])
        assert close(stored["metrics"], local["metrics"]), (stored["metrics"], local["metrics"])
        assert close(stored["curves"]["per_epoch"], local["curves"]["per_epoch"])

    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_store.runs.iterdir()}
    again = run_sweep_ray(configs + configs[:1], store=tmp_store, progress=False)  # nothing to train
    assert again.trained == [] and sorted(again.already_stored) == sorted(ids + ids[:1])
    assert str(again).startswith("0 trained, 4 already stored")
    assert {p.name: p.stat().st_mtime_ns for p in tmp_store.runs.iterdir()} == mtimes


def test_killed_worker_is_retried_and_its_stale_claim_taken_over(local_ray, tmp_store, tmp_path):
    victim, other = cfg(lr=0.1, seed=3), cfg(lr=0.1, seed=4)
    marker, attempts = tmp_path / "killed", tmp_path / "attempts"

    def dies_once(cfg_dict, store_root, *args, **kw):  # pickled by value into the Ray worker
        import os

        from lrbook.store import ResultStore
        from lrbook.sweep import run_one

        store = ResultStore(store_root)
        with open(attempts, "a") as f:
            f.write(f"{cfg_dict['seed']} {os.getpid()}\n")
        if cfg_dict["seed"] == 3 and not marker.exists():
            assert store.claim(victim.run_id)  # the run is claimed by this process...
            marker.write_text(store.lock_path(victim.run_id).read_text())
            os._exit(1)  # ...which dies mid-run
        return run_one(cfg_dict, store_root, *args, **kw)

    report = run_sweep_ray([victim, other], store=tmp_store, progress=False, max_retries=2, _body=dies_once)
    assert sorted(report.trained) == sorted([victim.run_id, other.run_id]) and not report.failed
    assert tmp_store.has(victim.run_id) and tmp_store.get(victim.run_id)["status"] in ("converged", "max_epochs")
    dead_pid = str(json.loads(marker.read_text())["pid"])  # the dead attempt did hold the claim
    tries = [line.split() for line in attempts.read_text().splitlines() if line.startswith("3 ")]
    assert len(tries) == 2 and tries[0][1] == dead_pid != tries[1][1]
    assert not list(tmp_store.runs.glob("*.lock")) and not list(tmp_store.runs.glob(".*"))


def test_retry_on_another_host_takes_over_only_its_own_claim(local_ray, tmp_store, tmp_path):
    """The dead attempt 'ran on another host' (its claim names a host where the store cannot test
    the pid, and its heartbeat is fresh): the retry takes it over because the claim's owner is its
    own task; a foreign claim is respected."""
    victim, foreign = cfg(lr=0.1, seed=5), cfg(lr=0.1, seed=6)
    tmp_store.check_writable()
    tmp_store.lock_path(foreign.run_id).write_text("ghost-host 2")  # another sweep's live claim elsewhere
    marker = tmp_path / "killed"

    def dies_on_ghost_host(cfg_dict, store_root, *args, owner=None):
        import json
        import os

        from lrbook.store import ResultStore
        from lrbook.sweep import run_one

        store = ResultStore(store_root)
        if cfg_dict["seed"] == 5 and not marker.exists():
            marker.touch()
            assert store.claim(victim.run_id, owner=owner)
            lock = store.lock_path(victim.run_id)  # as if this attempt ran there
            lock.write_text(json.dumps({"host": "ghost-host", "pid": 1, "owner": owner}))
            os._exit(1)
        return run_one(cfg_dict, store_root, *args, owner=owner)

    report = run_sweep_ray([victim, foreign], store=tmp_store, progress=False, _body=dies_on_ghost_host)
    assert report.trained == [victim.run_id] and report.claimed_elsewhere == [foreign.run_id]
    assert tmp_store.has(victim.run_id) and not tmp_store.has(foreign.run_id)
    assert tmp_store.lock_path(foreign.run_id).read_text() == "ghost-host 2"  # untouched
    assert not tmp_store.lock_path(victim.run_id).exists() and not list(tmp_store.runs.glob(".*"))


def test_retries_spent_report_the_run_failed_and_a_later_sweep_trains_it(local_ray, tmp_store, tmp_path):
    victim = cfg(lr=0.1, seed=7)

    def always_dies(cfg_dict, store_root, *args, **kw):
        import os

        from lrbook.store import ResultStore

        assert ResultStore(store_root).claim(victim.run_id)
        os._exit(1)

    with pytest.raises(RuntimeError, match="1 run\\(s\\) failed"):
        run_sweep_ray([victim], store=tmp_store, progress=False, max_retries=0, _body=always_dies)
    assert not tmp_store.has(victim.run_id) and tmp_store.lock_path(victim.run_id).exists()  # dead pid's claim
    report = run_sweep_ray([victim], store=tmp_store, progress=False)  # same host: dead pid, taken over
    assert report.trained == [victim.run_id] and tmp_store.has(victim.run_id), report
    assert not tmp_store.lock_path(victim.run_id).exists()


def test_resources_the_cluster_lacks_fail_early_on_local_ray_and_warn_on_a_cluster():
    from lrbook.ray_sweep import _check_resources

    class FakeRay:
        @staticmethod
        def cluster_resources():
            return {"CPU": 2.0}

    _check_resources(FakeRay, 2.0, 0.0, started_here=True)
    with pytest.raises(ValueError, match="1.0 GPU but the Ray cluster has 0"):
        _check_resources(FakeRay, 1.0, 1.0, started_here=True)
    with pytest.warns(UserWarning, match="4.0 CPU"):
        _check_resources(FakeRay, 4.0, 0.0, started_here=False)
