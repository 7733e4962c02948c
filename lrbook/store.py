"""Results store: one JSON record per training run, keyed by the hash of its config.

Layout: `<root>/runs/<run_id>.json`, plus `<root>/artefacts/<run_id>/` for small artefacts
(attribution maps; never checkpoints). Writes go to a temporary file in the same folder and are
renamed into place, so readers never see a partial record and concurrent writers cannot corrupt
one. A claim file (`<run_id>.lock`, created with O_EXCL) keeps two workers from training the same
run; a claim whose process is gone is taken over.
"""
from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterable


class StoreError(OSError):
    pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def repo_root() -> Path | None:
    """The lrbook checkout this code runs from, if any (the folder with pyproject.toml and lrbook/)."""
    for start in (Path.cwd().resolve(), Path(__file__).resolve().parent):
        for p in (start, *start.parents):
            if (p / "pyproject.toml").is_file() and (p / "lrbook").is_dir():
                return p
    return None


def default_store_path() -> Path:
    """$LRBOOK_STORE, else `results/` of the checkout, else ~/.cache/lrbook/results."""
    if os.environ.get("LRBOOK_STORE"):
        return Path(os.environ["LRBOOK_STORE"]).expanduser()
    root = repo_root()
    return root / "results" if root else Path.home() / ".cache" / "lrbook" / "results"


def _clean(obj):
    """JSON-safe copy: NaN/inf become None, tuples lists, numpy scalars floats."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class ResultStore:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_store_path()
        self.runs = self.root / "runs"

    def __repr__(self):
        return f"ResultStore({str(self.root)!r})"

    def check_writable(self) -> None:
        """Fail now, not after training, if records cannot be written here."""
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.runs, prefix=".probe-"):
                pass
        except OSError as e:
            raise StoreError(f"results store {self.root} is not writable ({e.strerror or e}); pass another "
                             "location (store_dir= in a notebook, LRBOOK_STORE in the environment)") from None

    def path(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    def artefact_dir(self, run_id: str) -> Path:
        return self.root / "artefacts" / run_id

    def put_artefact(self, run_id: str, name: str, **arrays) -> Path:
        """Write numpy arrays atomically as `artefacts/<run_id>/<name>.npz`."""
        import numpy as np

        folder = self.artefact_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}-", suffix=".npz")
        os.fchmod(fd, _FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(tmp, folder / f"{name}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return folder / f"{name}.npz"

    def has_artefact(self, run_id: str, name: str) -> bool:
        """Whether the artefact's file is in the store. A record lists the artefacts its run wrote;
        the file can still be absent, e.g. a run trained elsewhere whose records alone were copied."""
        return (self.artefact_dir(run_id) / f"{name}.npz").is_file()

    def get_artefact(self, run_id: str, name: str) -> dict:
        import numpy as np

        with np.load(self.artefact_dir(run_id) / f"{name}.npz") as z:
            return {k: z[k] for k in z.files}

    def has(self, run_id: str) -> bool:
        return self.path(run_id).is_file()

    def get(self, run_id: str) -> dict:
        return json.loads(self.path(run_id).read_text())

    def put(self, record: dict) -> Path:
        """Write `record` atomically under its `run_id`."""
        self.check_writable()
        target = self.path(record["run_id"])
        fd, tmp = tempfile.mkstemp(dir=self.runs, prefix=f".{record['run_id']}-", suffix=".tmp")
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; records are shared data
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(_clean(record), f, indent=1, sort_keys=True)
                f.write("\n")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def stored_configs(self) -> dict[str, dict]:
        """run_id -> config of every stored record."""
        return {r["run_id"]: r["config"] for r in self.records()}

    def records(self) -> Iterable[dict]:
        if not self.runs.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.runs.glob("*.json"))]

    def __len__(self):
        return len(list(self.runs.glob("*.json"))) if self.runs.is_dir() else 0

    # -- claims: one trainer per run across processes ------------------------------------------
    def _lock(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.lock"

    def claim(self, run_id: str) -> bool:
        """True if this process may train `run_id` now (not stored, not claimed by a live process)."""
        self.check_writable()
        if self.has(run_id):
            return False
        lock = self._lock(run_id)
        # Write "host pid" to a temporary file, then link it into place: the claim appears complete
        # or not at all, so no reader ever sees an empty claim and mistakes it for a stale one.
        fd, tmp = tempfile.mkstemp(dir=self.runs, prefix=f".{run_id}-", suffix=".claim")
        with os.fdopen(fd, "w") as f:
            f.write(f"{socket.gethostname()} {os.getpid()}")
        try:
            for _ in range(2):
                try:
                    os.link(tmp, lock)
                except FileExistsError:
                    if _claim_is_stale(lock):
                        lock.unlink(missing_ok=True)
                        continue
                    return False
                if self.has(run_id):  # finished elsewhere between the check and the claim
                    self.release(run_id)
                    return False
                return True
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def release(self, run_id: str) -> bool:
        self._lock(run_id).unlink(missing_ok=True)
        return True

    def to_frame(self, dedupe: bool = True, **filters):
        """All records as a pandas DataFrame: config fields, dataset parameters (`data.*`), scalar
        metrics, status and provenance columns; `filters` select rows by column value; see
        `records_to_frame` for `dedupe`."""
        return records_to_frame(self.records(), dedupe=dedupe, **filters)


def _claim_is_stale(lock: Path) -> bool:
    try:
        host, pid = lock.read_text().split()
    except FileNotFoundError:
        return True
    except (OSError, ValueError):  # unreadable or half-written: stale only once it is old
        try:
            return time.time() - lock.stat().st_mtime > 60
        except FileNotFoundError:
            return True
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def stands_for(stored: dict, wanted: dict) -> bool:
    """Whether a stored run's config stands for a wanted one: equal outside `config.LOGGING_FIELDS`
    (so both trained identically), and for each logging field the wanted one sets, the same value
    (the stored run logged what the wanted one asks for)."""
    from .config import LOGGING_FIELDS

    for key in set(stored) | set(wanted):
        have, want = stored.get(key), wanted.get(key)
        if key in LOGGING_FIELDS:
            if want and have != want:
                return False
        elif have != want:
            return False
    return True


def _config_columns() -> set[str]:
    import dataclasses

    from .config import RunConfig

    return {f.name for f in dataclasses.fields(RunConfig)} - {"dataset_params", "model_params"}


_CONFIG_COLUMNS = _config_columns()


def records_to_frame(records: Iterable[dict], dedupe: bool = True, **filters):
    """Records as a DataFrame. With `dedupe`, runs whose configs differ only in logging fields
    (`config.LOGGING_FIELDS`, e.g. Fig. 18's neuron probes) count once: they trained identically.
    So do runs that differ only in speed options (`config.SPEED_FIELDS`, e.g. bf16): the paper's
    fp32 eager run is kept where there is one."""
    import pandas as pd

    from .config import LOGGING_FIELDS, SPEED_FIELDS

    rows = []
    for r in records:
        cfg = r["config"]
        row = {k: v for k, v in cfg.items() if not isinstance(v, dict)}
        row.update({f"data.{k}": v for k, v in cfg.get("dataset_params", {}).items()})
        row.update({f"model.{k}": v for k, v in cfg.get("model_params", {}).items()})
        row.update({k: v for k, v in (r.get("metrics") or {}).items() if not isinstance(v, (dict, list))})
        row.update(run_id=r["run_id"], status=r["status"], epochs=r.get("epochs"),
                   seconds=r.get("provenance", {}).get("seconds"), device=r.get("provenance", {}).get("device"))
        rows.append(row)
    df = pd.DataFrame(rows)
    if dedupe and len(df):
        logging = [c for c in LOGGING_FIELDS if c in df]
        key = [c for c in df.columns if c in _CONFIG_COLUMNS or c.startswith(("data.", "model."))]
        key = [c for c in key if c not in logging and c not in SPEED_FIELDS]
        order = df[logging].fillna(False).astype(bool).sum(axis=1) if logging else 0
        fast = pd.Series(False, index=df.index)
        for c, default in (("precision", "fp32"), ("channels_last", False), ("compile", False)):
            if c in df:
                fast |= df[c].fillna(default) != default
        order = order + 100 * fast  # a faster-path replica only where no plain run exists
        df = df.assign(_order=order).sort_values("_order", kind="stable")
        df = df.drop_duplicates(subset=key, keep="first").drop(columns="_order").sort_index()
    for k, v in filters.items():
        if k not in df.columns:
            return df.iloc[0:0]
        df = df[df[k] == v]
    return df.reset_index(drop=True)
