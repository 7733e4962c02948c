"""Results store: one JSON record per training run, keyed by the hash of its config.

Layout: `<root>/runs/<run_id>.json` (the record, `lrbook.record`), plus `<root>/artefacts/<run_id>/`
for small artefacts (attribution maps, unit traces; never checkpoints). Writes go to a temporary
file in the same folder and are renamed into place, so readers never see a partial record and
concurrent writers cannot corrupt one. A file that is not a valid record is skipped and reported by
name, and its run counts as missing. A claim file (`runs/<run_id>.lock`) with a heartbeat keeps two
processes, hosts or users from training the same run; a claim whose heartbeat stops is taken over
(`ResultStore.claim`). Hidden files in runs/ (`.<run_id>-*.tmp`, `.claim`, `.takeover`) are
in-flight writes; `ResultStore.clean` removes the ones an interrupted process left.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterable

from . import claims as run_claims
from .claims import ClaimBlocked
from .record import BadRecord, load_record


class StoreError(OSError):
    pass


class BadRecordWarning(UserWarning):
    """Bad record files were skipped."""


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
        """Whether a valid record of `run_id` is stored (a bad file counts as missing, so the run is
        trained again and the file replaced)."""
        try:
            self.get(run_id)
        except (FileNotFoundError, BadRecord):
            return False
        return True

    def get(self, run_id: str) -> dict:
        """The record of `run_id`, upgraded to the current schema (`lrbook.record`); `BadRecord`,
        naming the file, if the file is not a valid record."""
        return load_record(self.path(run_id))

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
        """run_id -> config of every valid stored record."""
        return {r["run_id"]: r["config"] for r in self.records()}

    def records(self) -> list[dict]:
        """Every valid record, upgraded to the current schema. Bad files are skipped with a warning
        that names them; `bad_records()` lists them."""
        good, bad = self._scan()
        if bad:
            warnings.warn(f"{len(bad)} bad record(s) in {self.runs} skipped: "
                          + "; ".join(str(b) for b in bad[:3]) + (" ..." if len(bad) > 3 else "")
                          + " (`python -m lrbook status --check` lists them; a sweep retrains their runs)",
                          BadRecordWarning, stacklevel=2)
        return good

    def bad_records(self) -> list[BadRecord]:
        """The files in runs/ that are not valid records, each with its reason."""
        return self._scan()[1]

    def _scan(self) -> tuple[list[dict], list[BadRecord]]:
        good, bad = [], []
        if self.runs.is_dir():
            for p in sorted(self.runs.glob("*.json")):
                try:
                    good.append(load_record(p))
                except BadRecord as e:
                    bad.append(e)
                except FileNotFoundError:  # replaced or removed while scanning
                    pass
        return good, bad

    def __len__(self):
        return len(self._scan()[0])

    # -- claims: one trainer per run across processes, hosts and users -------------------------
    def lock_path(self, run_id: str) -> Path:
        """The claim file of `run_id` (see `claim`)."""
        return self.runs / f"{run_id}.lock"

    def claim(self, run_id: str, owner: str | None = None) -> bool:
        """True if this process may train `run_id` now: it is not stored and no live process holds
        its claim. The claim file `runs/<run_id>.lock` (JSON: host, pid, process start, user,
        owner, time) is kept alive by a heartbeat (its modification time, touched every
        `HEARTBEAT_S` by a thread of this process) until `release`. A claim is stale, and taken
        over, when its heartbeat is older than `claim_timeout()` whatever host wrote it, or at once
        when it was written on this host by a process that is gone (or whose pid was reused), or
        when `owner` (e.g. a Ray task id) is the one that wrote it: an earlier, dead attempt of the
        same task. Raises `ClaimBlocked` if a stale claim cannot be removed (a sticky folder
        shared by several users)."""
        self.check_writable()
        if self.has(run_id):
            self._remove_if_stale(self.lock_path(run_id))  # left by a kill between put and release
            return False
        lock = self.lock_path(run_id)
        fd, tmp = tempfile.mkstemp(dir=self.runs, prefix=f".{run_id}-", suffix=".claim")
        os.fchmod(fd, _FILE_MODE)  # readable by the other users of a shared store
        token = json.dumps(run_claims.claim_info(owner))
        with os.fdopen(fd, "w") as f:
            f.write(token)
        # The claim is written to a temporary file, then linked into place: it appears complete or
        # not at all, so no reader ever sees an empty claim and mistakes it for a stale one.
        try:
            try:
                os.link(tmp, lock)
            except FileExistsError:
                seen = run_claims.stat_or_none(lock)
                if seen is None or not run_claims.claim_is_stale(lock, owner):
                    return False
                if not run_claims.take_over(lock, seen, tmp):
                    return False
            run_claims.HEARTBEAT.add(lock, token)
            try:
                if self.has(run_id):  # finished elsewhere between the check and the claim
                    self.release(run_id)
                    return False
            except BaseException:  # a signal right after the claim appeared: do not leave it
                self.release(run_id)
                raise
            return True
        finally:
            Path(tmp).unlink(missing_ok=True)

    def release(self, run_id: str) -> bool:
        """Give up this process's claim of `run_id`; a claim another process holds is left alone."""
        lock = self.lock_path(run_id)
        token = run_claims.HEARTBEAT.discard(lock)
        if token is not None and run_claims.holds(lock, token):
            lock.unlink(missing_ok=True)
            return True
        return False

    @contextlib.contextmanager
    def claimed(self, run_id: str, owner: str | None = None):
        """`with store.claimed(run_id) as ok:` claims (see `claim`), yields whether it did, and
        releases on exit, also on an exception or a signal."""
        ok = self.claim(run_id, owner)
        try:
            yield ok
        finally:
            if ok:
                self.release(run_id)

    def claims(self) -> list[dict]:
        """Every claim file in the store: run_id, holder (host, pid, user), heartbeat age, stale."""
        out = []
        for lock in sorted(self.runs.glob("*.lock")) if self.runs.is_dir() else []:
            st = run_claims.stat_or_none(lock)
            if st is None:
                continue
            info = run_claims.read_claim(lock) or {}
            out.append({"run_id": lock.stem, "host": info.get("host"), "pid": info.get("pid"),
                        "user": info.get("user"), "heartbeat_age_s": round(time.time() - st.st_mtime, 1),
                        "stale": run_claims.claim_is_stale(lock), "stored": self.has(lock.stem)})
        return out

    def clean(self, min_age_s: float = 600.0) -> list[Path]:
        """Remove what interrupted processes leave in runs/: stale claims (also one beside a stored
        record) and temporary files (`.<run_id>-*.tmp`, `.claim`, `.takeover`, `.probe-*`) older
        than `min_age_s`. Returns the removed paths; files of other users that cannot be removed
        are left."""
        removed = []
        if not self.runs.is_dir():
            return removed
        for lock in self.runs.glob("*.lock"):
            if self._remove_if_stale(lock):
                removed.append(lock)
        now = time.time()
        for p in self.runs.glob(".*"):
            st = run_claims.stat_or_none(p)
            if st is not None and now - st.st_mtime > min_age_s:
                try:
                    p.unlink()
                    removed.append(p)
                except FileNotFoundError:
                    pass
                except PermissionError:
                    pass
        return removed

    def check(self) -> list[str]:
        """Every problem in the store, one line each: files in runs/ that are not valid records (see
        `lrbook.record`), and claims whose heartbeat stopped. Empty when all is well."""
        out = [f"bad record {b.path.name}: {b.reason} (its run counts as missing; a sweep trains it again)"
               for b in self.bad_records()]
        out += [f"stale claim {c['run_id']}.lock of {c['user'] or '?'} on {c['host'] or '?'} (pid {c['pid'] or '?'}), "
                f"heartbeat {c['heartbeat_age_s']:.0f} s old" + (" beside its stored record" if c["stored"] else "")
                + " (a sweep takes it over; `python -m lrbook status --clean` removes it)"
                for c in self.claims() if c["stale"]]
        return out

    def _remove_if_stale(self, lock: Path) -> bool:
        seen = run_claims.stat_or_none(lock)
        if seen is None or not run_claims.claim_is_stale(lock):
            return False
        try:
            return run_claims.take_over(lock, seen, None)
        except ClaimBlocked:
            return False

    def to_frame(self, dedupe: bool = True, **filters):
        """All records as a pandas DataFrame: config fields, dataset parameters (`data.*`), scalar
        metrics, status and provenance columns; `filters` select rows by column value; see
        `records_to_frame` for `dedupe`."""
        return records_to_frame(self.records(), dedupe=dedupe, **filters)


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
        if row.get("csi") is not None and row.get("bsi") is not None:  # vocabulary.SELECTIVITY_CHECKS
            row["csi_minus_bsi"] = row["csi"] - row["bsi"]
        if row.get("test_ba_acc") is not None and row.get("test_bc_acc") is not None:  # the patch experiment
            row["test_ba_minus_bc"] = row["test_ba_acc"] - row["test_bc_acc"]
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
