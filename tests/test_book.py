"""The book: it builds from a clean state with warnings as errors, rendering from the committed store;
the built HTML is self-contained; and a rebuild shows the store as it is now, not as it was."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "results" / "runs"


def jupyter_book() -> str:
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    assert jb, "jupyter-book is not installed: pip install -e '.[dev]'"
    return jb


def build_book(out: Path, store: Path | None = None, toc: Path | None = None, strict: bool = True):
    """`jupyter-book build book` into `out`, rendering from `store` (None: the committed results/)."""
    env = {k: v for k, v in os.environ.items() if k != "LRBOOK_STORE"}
    if store is not None:
        env["LRBOOK_STORE"] = str(store)
    cmd = [jupyter_book(), "build", "book", "--path-output", str(out)]
    cmd += ["-W", "-n", "--keep-going"] if strict else []
    cmd += ["--toc", str(toc)] if toc else []
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env)


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """The whole book built once, from the committed results/, for every test of the built HTML."""
    out = tmp_path_factory.mktemp("book")
    proc = build_book(out)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out / "_build" / "html"


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(built_book):
    for page in ("intro.html", "notebooks/01_synthetic.html", "notebooks/status.html", "definitions.html"):
        assert (built_book / page).is_file(), f"{page} missing from the built site"
    status = (built_book / "notebooks" / "status.html").read_text()
    assert "Fig. 3" in status and "not possible here" in status


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)


def _html_pages(html: Path):
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.parts)


@pytest.mark.slow
def test_every_internal_link_of_the_built_book_resolves(built_book):
    broken, checked = [], 0
    for page in _html_pages(built_book):
        parser = _Links()
        parser.feed(page.read_text())
        for target in parser.targets:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or not parts.path:  # external, or a fragment of this page
                continue
            checked += 1
            if not (page.parent / unquote(parts.path)).exists():
                broken.append(f"{page.relative_to(built_book)} -> {target}")
    assert checked > 50, f"only {checked} internal links found: is the site built?"
    assert not broken, "broken internal links:\n" + "\n".join(broken)


@pytest.mark.slow
def test_the_built_book_holds_no_path_of_the_building_machine(built_book):
    machine_paths = {str(ROOT), str(ROOT.resolve()), str(built_book.parents[1]), str(Path.home())}
    machine_paths = {p for p in machine_paths if len(p) > 1}
    found = []
    for page in built_book.rglob("*"):
        if page.suffix in (".html", ".txt", ".js", ".ipynb") and page.is_file():
            text = page.read_text(errors="replace")
            found += [f"{page.relative_to(built_book)}: {p}" for p in machine_paths if p in text]
    assert not found, "absolute paths in the built book:\n" + "\n".join(found)


class _Tables(HTMLParser):
    """Every <table> of a page as a list of rows of cell texts (header row first)."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.mark.slow
def test_status_page_separates_coverage_from_verdict_and_prints_counts_as_integers(built_book):
    parser = _Tables()
    parser.feed((built_book / "notebooks" / "status.html").read_text())
    by_header = {tuple(t[0]): t[1:] for t in parser.tables if t}
    coverage = by_header[("item", "section", "coverage", "scale", "runs", "LRs", "seeds", "note")]
    verdict = by_header[("item", "shows", "section", "verdict", "why")]
    assert [r[0] for r in coverage] == [r[0] for r in verdict] and "Fig. 3" in [r[0] for r in coverage]
    for row in coverage:
        for count in row[4:7]:
            assert count == "" or count.isdigit(), f"{row[0]}: count printed as {count!r}"
    assert any(row[4].isdigit() for row in coverage), "no item has runs"
    for table in parser.tables:
        assert not table[0] or table[0][0] != "", "a table prints the pandas index"


# ------------------------------------------------------------------------------------ rebuilds


def _load_fingerprint_extension():
    spec = importlib.util.spec_from_file_location("store_fingerprint", ROOT / "book" / "_ext" / "store_fingerprint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parity_records(n: int) -> list[Path]:
    """The first `n` stored parity/FCN records (by run id)."""
    found = []
    for path in sorted(RUNS.glob("*.json")):
        if json.loads(path.read_text())["config"]["dataset"] == "parity":
            found.append(path)
        if len(found) == n:
            return found
    pytest.skip(f"the committed store holds fewer than {n} parity runs")


def test_store_fingerprint_follows_the_store_contents(tmp_path):
    ext = _load_fingerprint_extension()
    store, package = tmp_path / "store", tmp_path / "pkg"
    (store / "runs").mkdir(parents=True)
    package.mkdir()
    (store / "runs" / "a.json").write_text("{}")
    (package / "m.py").write_text("x = 1\n")
    roots = {"store": store, "lrbook": package}
    first = ext.fingerprint(roots)
    assert ext.fingerprint(roots) == first
    (store / "runs" / "a.lock").write_text("claim")  # a worker's claim and temporary files do not count
    (store / "runs" / ".a-123.tmp").write_text("{")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    assert ext.fingerprint(roots) == first
    (store / "runs" / "b.json").write_text("{}")  # a new run
    second = ext.fingerprint(roots)
    assert second != first
    (store / "runs" / "b.json").write_text('{"status": "converged"}')  # a rewritten run
    assert ext.fingerprint(roots) not in (first, second)
    (store / "runs" / "b.json").unlink()
    assert ext.fingerprint(roots) == first
    (package / "m.py").write_text("x = 2\n")  # the package the pages import
    assert ext.fingerprint(roots) != first
    (package / "m.py").write_text("x = 1\n")
    (store / "artefacts" / "a").mkdir(parents=True)
    (store / "artefacts" / "a" / "trace.npz").write_bytes(b"\1")
    assert ext.fingerprint(roots) != first
    # the fingerprint holds no absolute path: a copy of the store elsewhere has the same one
    copy = tmp_path / "elsewhere"
    shutil.copytree(store, copy / "store")
    shutil.copytree(package, copy / "pkg")
    assert ext.fingerprint({"store": copy / "store", "lrbook": copy / "pkg"}) == ext.fingerprint(roots)


def _runs_in_store(html: Path) -> int:
    text = (html / "notebooks" / "status.html").read_text()
    counts = re.findall(r"(\d+) runs in the store", text)
    assert counts, "the status page does not say how many runs the store holds"
    return int(counts[0])


@pytest.mark.slow
def test_a_rebuild_shows_the_store_as_it_is_now(tmp_path):
    """After a run is added to (or removed from) the store, a rebuild executes the pages again; with
    nothing changed it executes nothing. Built with the status page alone to keep it short."""
    store = tmp_path / "store"
    (store / "runs").mkdir(parents=True)
    records = _parity_records(4)
    for path in records[:3]:
        shutil.copy(path, store / "runs")
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: notebooks/status\n")
    out = tmp_path / "build"
    html = out / "_build" / "html"

    def rebuild():
        proc = build_book(out, store, toc, strict=False)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        return proc.stdout + proc.stderr

    log = rebuild()
    assert "Executing notebook" in log
    assert _runs_in_store(html) == 3

    log = rebuild()  # nothing changed: nothing executes, nothing is written
    assert "Executing notebook" not in log and "no targets are out of date" in log
    assert _runs_in_store(html) == 3

    shutil.copy(records[3], store / "runs")  # a new run lands
    log = rebuild()
    assert "Executing notebook" in log
    assert _runs_in_store(html) == 4

    (store / "runs" / records[0].name).unlink()  # a run is removed
    rebuild()
    assert _runs_in_store(html) == 3
