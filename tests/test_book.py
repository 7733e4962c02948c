"""The book builds from a clean state with warnings as errors, rendering from the committed store."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(tmp_path):
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    assert jb, "jupyter-book is not installed: pip install -e '.[dev]'"
    out = tmp_path / "build"
    env = {k: v for k, v in os.environ.items() if k != "LRBOOK_STORE"}  # render the committed results/
    proc = subprocess.run([jb, "build", "book", "-W", "-n", "--keep-going", "--path-output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    html = out / "_build" / "html"
    for page in ("intro.html", "notebooks/01_synthetic.html", "notebooks/status.html", "definitions.html"):
        assert (html / page).is_file(), f"{page} missing from the built site"
    status = (html / "notebooks" / "status.html").read_text()
    assert "Fig. 3" in status and "not possible here" in status
