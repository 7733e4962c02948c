"""benchmarks/throughput.py runs end to end on a CPU and reports every row against its baseline
(a functional check with a few steps; speed itself is measured by the benchmark, never in tests)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_throughput_benchmark_prints_every_row_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--device", "cpu",
                           "--models", "fcn", "--steps", "2", "--warmup", "1", "--repeats", "1", "--packs", "2",
                           "--procs", "2", "--variants", "fp32", "fp32+cl", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    setups = [(r["setup"], r["variant"]) for r in report["rows"]]
    assert setups == [("baseline", "fp32"), ("resident", "fp32"), ("packed 2", "fp32"), ("resident", "fp32+cl"),
                      ("procs 2", "fp32"), ("procs 2", "fp32+cl")]  # packing implements no channels_last
    for r in report["rows"]:
        assert r["images_per_s"] > 0 and r["x_baseline"] == pytest.approx(
            r["images_per_s"] / report["rows"][0]["images_per_s"])
    procs = report["rows"][-2]
    assert procs["K"] == 2 and procs["threads_per_process"] >= 1
    assert procs["images_per_s"] == pytest.approx(2 * 100 * procs["steps"] / procs["seconds"])
    assert "procs 2" in proc.stdout and "x baseline" in proc.stdout
