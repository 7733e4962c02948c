"""tools/timed_batch.sh: a queue of commands under one budget, then the store's new files packed
(for a device call with a hard time limit; see the README's "Training on a lent GPU")."""
from __future__ import annotations

import os
import shlex
import subprocess
import tarfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "timed_batch.sh"
PAPER_GPU_QUEUE = Path(__file__).resolve().parents[1] / "tools" / "paper_gpu_queue.txt"


def _batch(tmp_path, budget, lines, reserve=1):
    store, out = tmp_path / "store", tmp_path / "out"
    (store / "runs").mkdir(parents=True)
    (store / "runs" / "old.json").write_text("{}")
    old = time.time() - 60
    os.utime(store / "runs" / "old.json", (old, old))
    queue = tmp_path / "queue.txt"
    queue.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "LRBOOK_STORE": str(store), "LRBOOK_BATCH_RESERVE": str(reserve)}
    began = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPT), str(budget), str(out), str(queue)], env=env,
                          capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - began, store, out


def test_a_command_past_the_budget_is_stopped_and_what_was_stored_is_packed(tmp_path):
    proc, seconds, store, out = _batch(tmp_path, 4, [
        "# a comment",
        'echo "{\\"run\\": 1}" > "$LRBOOK_STORE/runs/new.json"; touch "$LRBOOK_STORE/runs/new.lock"',
        'mkdir -p "$LRBOOK_STORE/artefacts/new" && echo x > "$LRBOOK_STORE/artefacts/new/maps.npz"',
        "trap 'echo got-term >&2; exit 143' TERM; sleep 100 & wait",
        "echo never-run",
    ])
    assert seconds < 20, "the sleeping command was stopped at the budget"
    assert proc.returncode == 124, proc.stderr
    assert "got-term" in proc.stderr and "no time left for: echo never-run" in proc.stderr
    assert "never-run" not in proc.stdout
    listed = (out / "new-files.txt").read_text().split()
    assert listed == ["artefacts/new/maps.npz", "runs/new.json"], "new files only, no claim files"
    with tarfile.open(out / "results-new.tar.gz") as tar:
        assert sorted(tar.getnames()) == listed
        assert tar.extractfile("runs/new.json").read() == b'{"run": 1}\n'


def test_a_queue_that_fits_exits_zero_and_bad_arguments_fail_at_once(tmp_path):
    proc, _, _, out = _batch(tmp_path, 60, ["true", "echo done"])
    assert proc.returncode == 0 and proc.stdout == "done\n"
    assert (out / "new-files.txt").read_text() == ""
    bad = subprocess.run(["bash", str(SCRIPT), "ten", str(tmp_path), str(tmp_path / "q")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "whole number of seconds" in bad.stderr


def test_every_line_of_the_paper_gpu_queue_is_a_valid_gpu_command_within_table_s1():
    from lrbook.__main__ import build_parser, sweep_configs
    from lrbook.paper import paper_row

    lines = [line for line in PAPER_GPU_QUEUE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    parser, commands = build_parser(), set()
    for line in lines:
        words = shlex.split(line)
        assert words[:3] == ["python", "-m", "lrbook"], line
        args = parser.parse_args(words[3:])
        assert args.device == "cuda", line
        commands.add(args.command)
        if args.command == "reevaluate":
            assert args.retrain and args.missing == ["prunability_global"], line
            continue
        configs = sweep_configs(args)
        assert len(configs) >= 9 and {c.scale for c in configs} == {"paper"}, line
        assert {c.precision for c in configs} == {"fp32"} and not any(c.compile for c in configs), line
        if args.lrs:  # an LR grid within the cell's Table S1 range, reaching its low end
            ref = paper_row(args.dataset, args.model)
            assert min(args.lrs) == ref.lr_min and max(args.lrs) <= ref.lr_max, line
            if args.model != "fcn":  # the FCN's line only adds what lies below the stored LRs
                assert max(args.lrs) == ref.lr_max, line
    assert commands == {"sweep", "reevaluate"}


BUNDLE = Path(__file__).resolve().parents[1] / "tools" / "offline_bundle.sh"
OFFLINE_RUN = Path(__file__).resolve().parents[1] / "tools" / "offline_run.sh"


def test_an_offline_bundle_carries_data_and_packages_that_the_queue_then_finds(tmp_path):
    import sys

    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-labels-idx1-ubyte").write_bytes(bytes(range(256)) * 3)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"torchvision's download, not bundled")
    env = {**os.environ, "LRBOOK_DATA": str(tmp_path / "root"), "PYTHON": sys.executable,
           "LRBOOK_BUNDLE_PACKAGES": "captum"}
    bundle = tmp_path / "bundle"
    made = subprocess.run(["bash", str(BUNDLE), str(bundle)], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (bundle / "data" / "MNIST" / "raw").iterdir()) == ["train-labels-idx1-ubyte.gz"]
    assert (bundle / "site" / "captum" / "attr" / "__init__.py").is_file()
    assert not list(bundle.rglob("__pycache__"))

    store = tmp_path / "store"
    queue = tmp_path / "queue.txt"
    queue.write_text(f'{shlex.quote(sys.executable)} -c "import captum, os; print(captum.__file__); '
                     f'print(os.environ[\'LRBOOK_DATA\'])"\n')
    run_env = {**os.environ, "LRBOOK_STORE": str(store), "TMPDIR": str(tmp_path / "device-tmp")}
    run_env.pop("LRBOOK_DATA", None)
    (tmp_path / "device-tmp").mkdir()
    ran = subprocess.run(["bash", str(OFFLINE_RUN), str(bundle), "60", str(tmp_path / "out"), str(queue)],
                         env=run_env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    captum_file, data_root = ran.stdout.split()
    assert Path(captum_file).is_relative_to(bundle / "site"), "the bundle's package comes first"
    assert data_root == str(tmp_path / "device-tmp" / "lrbook-data")
    unpacked = Path(data_root) / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    assert unpacked.read_bytes() == bytes(range(256)) * 3
    assert (tmp_path / "out" / "results-new.tar.gz").is_file()


def test_an_offline_bundle_without_the_data_fails_saying_where_it_looked(tmp_path):
    env = {**os.environ, "LRBOOK_DATA": str(tmp_path / "nowhere")}
    made = subprocess.run(["bash", str(BUNDLE), str(tmp_path / "bundle")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 1
    assert f"no unpacked files in {tmp_path / 'nowhere'}/MNIST/raw/" in made.stderr
    assert "LRBOOK_DATA" in made.stderr
    missing = subprocess.run(["bash", str(OFFLINE_RUN), str(tmp_path / "absent"), "60", str(tmp_path / "o"),
                              str(tmp_path / "q")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "offline_bundle.sh" in missing.stderr
