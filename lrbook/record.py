"""The run record: the one stored result of one training run, its schema and its versions.

A record is a JSON object in `<store>/runs/<run_id>.json`:

| field | what |
|---|---|
| `schema_version` | this module's `SCHEMA_VERSION` when written; absent in version-1 records |
| `run_id` | `RunConfig.run_id`, the hash of `config`; also the file's name |
| `config` | `RunConfig.to_dict()`: everything that determined the run |
| `status` | `converged` (100% training accuracy), `max_epochs` (stopped at the cap) or `diverged` |
| `diverged_because` | for a diverged run, which part of `train.divergence_reason` fired (from version 2) |
| `epochs`, `steps` | how long it trained |
| `bc_ratio_drawn` | the bias-conflicting share actually drawn in the training set |
| `metrics` | scalar metrics (paper Sec. 3.2-3.3); `null` for a diverged run |
| `metric_versions` | optional: `{metric: "<family>/<version>"}`, the version (`metrics.METRIC_VERSIONS`) of the definition that computed each metric; absent in records stored before this field existed (the code at `provenance.git_commit` computed their metrics) and for `max_bc_loss_ratio` (a training curve's maximum) |
| `curves` | `per_epoch` training curves and evaluation curves (pruning) |
| `attribution_trace` | attribution probes during training (Fig. 3 lower panels), or `[]` |
| `artefacts` | names of small arrays in `<store>/artefacts/<run_id>/<name>.npz` |
| `provenance` | device, versions, git commit, start/finish time, seconds, of the process that finished the run (device, versions and git commit read when that process started; records stored before 2026-12-03 read them when the record was written); `train_seconds`, the training time of all its processes; `segments` for a run resumed from a training checkpoint (`lrbook.checkpoint`): one per process that trained part of it, oldest first, with the epochs it trained (`from_epoch`, `to_epoch`), `started`, `until` (its last saved state; for the last, the finish), device, git commit, torch version and numerics (a state saved before segments were kept gives only the epochs); `reevaluated` (device, versions, git commit, time, `from`: `weights`) once `lrbook reevaluate` recomputed its metrics |

`load_record` reads any version, checks it and upgrades it to the current one in memory; the file
is left as it is. A file that is not a valid record raises `BadRecord`, which names the file.
"""
from __future__ import annotations

import json
from pathlib import Path

SCHEMA_VERSION = 2
STATUSES = ("converged", "max_epochs", "diverged")
REQUIRED_CONFIG = ("dataset", "model", "lr", "seed", "scale")


class BadRecord(ValueError):
    """A file in the store's runs/ folder that is not a valid run record."""

    def __init__(self, path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{self.path}: {reason}")


def problems(record) -> list[str]:
    """What makes `record` (a parsed JSON value) not a valid run record; empty if it is one."""
    if not isinstance(record, dict):
        return [f"not a JSON object but {type(record).__name__}"]
    out = []
    version = record.get("schema_version", 1)
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        out.append(f"unknown schema_version {version!r} (this lrbook reads 1 to {SCHEMA_VERSION}; upgrade lrbook)")
    if not isinstance(record.get("run_id"), str) or not record.get("run_id"):
        out.append("no run_id")
    cfg = record.get("config")
    if not isinstance(cfg, dict):
        out.append("no config")
    else:
        out += [f"config has no {k}" for k in REQUIRED_CONFIG if k not in cfg]
    status = record.get("status")
    if status not in STATUSES:
        out.append(f"status {status!r} is not one of {list(STATUSES)}")
    metrics = record.get("metrics")
    if status in STATUSES and status != "diverged" and not isinstance(metrics, dict):
        out.append(f"a {status} run without metrics")
    if metrics is not None and not isinstance(metrics, dict):
        out.append("metrics is not an object")
    return out


def upgrade(record: dict) -> dict:
    """`record` in the current schema. Version 1 (no `schema_version`) differs only by that field."""
    if record.get("schema_version", 1) < 2:
        record = {**record, "schema_version": 2}
    return record


def load_record(path) -> dict:
    """Read, check and upgrade the record in `path`; `BadRecord` (naming the file) if it is not one."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise BadRecord(path, f"not text ({e.reason})") from None
    if not text.strip():
        raise BadRecord(path, "empty file")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRecord(path, f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    found = problems(record)
    if not found and record["run_id"] != path.stem:
        found = [f"its run_id {record['run_id']!r} does not match the file name"]
    if found:
        raise BadRecord(path, "; ".join(found))
    return upgrade(record)
