"""Re-execute the notebook pages when the results store or the lrbook package changes.

The pages render from the results store (`$LRBOOK_STORE`, else `results/` of the checkout) with the
`lrbook` package. Neither is an input Sphinx or jupyter-cache knows about: Sphinx rebuilds a page
when its source changes, and jupyter-cache keys an executed notebook on its code cells only. So a
new run in the store, or a change to `lrbook/`, would leave the book showing the old results.

This extension keeps a fingerprint of both (a hash of every file's path relative to its root and
its contents, so it is the same in every clone) in a stamp file inside the jupyter-cache folder.
When the fingerprint differs from the stamp, or there is no stamp, it clears the jupyter-cache and
marks every notebook page outdated, so Sphinx re-reads them and myst-nb executes them again. The
new stamp is written after a build that succeeded. A rebuild with nothing changed stays a no-op.

Keeping the stamp inside the cache folder means a cache restored from elsewhere (a CI cache, a
copied build folder) carries the fingerprint of the store it was executed against.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]  # book/_ext/store_fingerprint.py -> the checkout
STAMP_NAME = "lrbook-store-fingerprint.txt"
NOTEBOOK_SUFFIXES = (".ipynb",)


def store_path() -> Path:
    """The results store the pages render from: the same rule as `lrbook.store.default_store_path`."""
    if os.environ.get("LRBOOK_STORE"):
        return Path(os.environ["LRBOOK_STORE"]).expanduser()
    return REPO_ROOT / "results"


def package_path() -> Path:
    """The folder of the `lrbook` package the notebook kernels import (the checkout's lrbook/ when
    installed with `pip install -e`)."""
    spec = importlib.util.find_spec("lrbook")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return REPO_ROOT / "lrbook"


def _is_input(relative: Path) -> bool:
    """Files that can change what a page shows: not the store's claim and temporary files (hidden
    names, `*.lock`) nor Python bytecode."""
    if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
        return False
    return relative.suffix not in (".lock", ".pyc")


def fingerprint(roots: dict[str, Path]) -> str:
    """SHA-256 over the relative path and the contents of every input file under each root."""
    digest = hashlib.sha256()
    for label, root in sorted(roots.items()):
        digest.update(f"root {label}\n".encode())
        if not root.is_dir():
            continue
        files = sorted(p for p in root.rglob("*") if p.is_file() and _is_input(p.relative_to(root)))
        for path in files:
            digest.update(f"{path.relative_to(root).as_posix()}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def current_fingerprint() -> str:
    return fingerprint({"store": store_path(), "lrbook": package_path()})


def _cache_folder(app) -> Path:
    """The jupyter-cache folder myst-nb uses (set by myst-nb at builder-inited)."""
    configured = getattr(app.env, "mystnb_config", None)
    path = configured.execution_cache_path if configured is not None else ""
    return Path(path) if path else Path(app.outdir).parent / ".jupyter_cache"


def notebook_pages(env) -> list[str]:
    """Every page whose source is a notebook: each of them renders from the store."""
    return sorted(doc for doc in env.found_docs if str(env.doc2path(doc)).endswith(NOTEBOOK_SUFFIXES))


def invalidate_if_inputs_changed(app, env, added, changed, removed):
    """`env-get-outdated` handler: when the store or the package changed since the executed notebooks
    in the cache were made, clear the cache and return the notebook pages, to be read again."""
    new = current_fingerprint()
    app.lrbook_store_fingerprint = new
    stamp = _cache_folder(app) / STAMP_NAME
    old = stamp.read_text().strip() if stamp.is_file() else None
    if old == new:
        return []
    pages = notebook_pages(env)
    if _cache_folder(app).exists():
        shutil.rmtree(_cache_folder(app))
    logger.info(f"results store or lrbook package changed since the last build "
                f"({'no stamp' if old is None else old[:12]} -> {new[:12]}): "
                f"executing {len(pages)} notebook pages again")
    return pages


def write_stamp(app, exception):
    """`build-finished` handler: after a successful build the cache holds notebooks executed against
    the fingerprint computed at the start of the build."""
    new = getattr(app, "lrbook_store_fingerprint", None)
    if exception is not None or new is None:
        return
    folder = _cache_folder(app)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STAMP_NAME).write_text(new + "\n")


def setup(app):
    app.connect("env-get-outdated", invalidate_if_inputs_changed)
    app.connect("build-finished", write_stamp)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
