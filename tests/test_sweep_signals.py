"""Stopping sweeps: Ctrl-C, SIGTERM and SIGKILL of a sweep's controller at a random moment leave no
worker process and no claim behind, and running the sweep again completes the grid."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SWEEP = textwrap.dedent("""
    import signal
    import sys
    from lrbook import ResultStore, make_config
    from lrbook.sweep import SweepInterrupted, run_sweep

    # Ctrl-C as in a terminal, whatever disposition the test process passed on (an ignored SIGINT
    # is inherited through exec, and then Python installs no KeyboardInterrupt handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # smoke parity runs that stay below 100% training accuracy, so each one trains for seconds
    configs = [make_config("parity", "fcn", lr=lr, seed=s, scale="smoke", max_epochs=int(sys.argv[3]),
                           attribution_n=0, eval_n=50) for lr in (0.001,) for s in (0, 1, 2)]
    try:
        print(run_sweep(configs, ResultStore(sys.argv[1]), workers=int(sys.argv[2]), device="cpu", progress=False))
    except SweepInterrupted as e:
        print(e, file=sys.stderr)
        sys.exit(128 + e.signal)
""")


def _session_processes(sid: int) -> list[int]:
    """Pids of live processes in session `sid` (the controller was started as a session leader, so
    its workers, even orphaned ones, are in it)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _start(store: Path, workers: int, max_epochs: int = 200) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", SWEEP, str(store), str(workers), str(max_epochs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _wait_for_claims(store: Path, proc, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list((store / "runs").glob("*.lock"))) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError(f"no {n} claims within {timeout} s")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_stops_a_two_worker_sweep_and_leaves_nothing_behind(tmp_path, sig):
    store = tmp_path / "store"
    proc = _start(store, workers=2)
    _wait_for_claims(store, proc, 2)
    time.sleep(random.uniform(0.0, 1.5))  # a random moment of the runs in flight
    sent = time.monotonic()
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)  # Ctrl-C reaches the group
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    deadline = time.monotonic() + 10
    while _session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_processes(proc.pid) == [], "no worker outlives the controller"
    assert took < 15, f"stopped after {took:.1f} s"
    assert "Traceback" not in err, err  # orphaned workers stop quietly too
    if sig != signal.SIGKILL:
        assert proc.returncode == 128 + sig, err
        assert f"stopped by {sig.name}" in err and "Run the same sweep again" in err
        assert "Traceback" not in err, err
    assert list((store / "runs").glob("*.lock")) == [], "no claim left"
    stored = len(list((store / "runs").glob("*.json")))
    assert stored < 3, "the rest of the grid was not trained after the signal"

    again = _start(store, workers=2)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert f"{3 - stored} trained, {stored} already stored" in out
    assert len(list((store / "runs").glob("*.json"))) == 3 and not list((store / "runs").glob("*.lock"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_a_one_process_sweep_with_a_short_message(tmp_path):
    store = tmp_path / "store"
    proc = _start(store, workers=1)
    _wait_for_claims(store, proc, 1)
    time.sleep(random.uniform(0.0, 1.0))
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "0 trained" in err and "3 stopped" in err
    assert list((store / "runs").glob("*.lock")) == []
