"""Checkpoints: each run's final weights (to re-evaluate it without retraining) and the training
state of a run in progress (to resume it after its process was stopped).

Folder (`checkpoint_dir`): `$LRBOOK_CHECKPOINTS` if set; else `<checkout>/checkpoints/` for the
checkout's own store (`results/`); else `checkpoints/` inside a store elsewhere. Git ignores it.

| file | what | when it goes |
|---|---|---|
| `<run_id>.pt` | final weights (`state_dict`, on the CPU) and the run's config | kept; remove by hand to save space |
| `<run_id>.training.pt` | training state after an epoch: model, optimiser, RNG states, epoch, step, curves, attribution and unit traces, and the `segments` that trained it so far | removed when the run's record is stored |

Both are written to a temporary file and renamed into place, so a killed writer leaves the previous
file intact. Neither is part of the results store: records never refer to them.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import tempfile
from pathlib import Path

import torch

DEFAULT_EVERY = 5  # epochs between training checkpoints when $LRBOOK_CHECKPOINT_EVERY is unset


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # read once at import, as lrbook.store does


def checkpoint_dir(store_root=None) -> Path:
    """Where checkpoints of the runs of the store at `store_root` (default: the default store) live."""
    if os.environ.get("LRBOOK_CHECKPOINTS"):
        return Path(os.environ["LRBOOK_CHECKPOINTS"]).expanduser()
    from .store import ResultStore, repo_root

    root = ResultStore(store_root).root.resolve()
    checkout = repo_root()
    if checkout is not None and root == (checkout / "results").resolve():
        return checkout / "checkpoints"
    return root / "checkpoints"


def checkpoint_every(value: int | None = None) -> int:
    """Epochs between training checkpoints: `value`, else `$LRBOOK_CHECKPOINT_EVERY`, else
    `DEFAULT_EVERY`; 0 turns training checkpoints off."""
    if value is None:
        text = os.environ.get("LRBOOK_CHECKPOINT_EVERY", "").strip()
        value = int(text) if text else DEFAULT_EVERY
    if value < 0:
        raise ValueError(f"checkpoint interval must be >= 0 epochs, got {value}")
    return int(value)


def _save_atomically(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; shared like the store's records
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _to_cpu(state):
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(v) for v in state)
    return state


def weights_path(run_id: str, store_root=None) -> Path:
    return checkpoint_dir(store_root) / f"{run_id}.pt"


def save_weights(model: torch.nn.Module, cfg, store_root=None) -> Path:
    """Write the final weights of `cfg`'s run (`<run_id>.pt`)."""
    return _save_atomically({"run_id": cfg.run_id, "config": cfg.to_dict(),
                             "state_dict": _to_cpu(model.state_dict())}, weights_path(cfg.run_id, store_root))


def load_weights(run_id: str, store_root=None) -> dict:
    """The saved final weights of `run_id` (`{"run_id", "config", "state_dict"}`); FileNotFoundError
    if there are none."""
    return torch.load(weights_path(run_id, store_root), map_location="cpu", weights_only=False)


def rng_states() -> dict:
    """Every global RNG state a run may draw from: torch CPU and CUDA, numpy, Python's `random`."""
    import numpy as np

    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(states: dict) -> None:
    import numpy as np

    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


class TrainingCheckpoint:
    """The training state of one run in progress (`<run_id>.training.pt`), saved every `every`
    epochs by `train.train` and loaded by it when the run starts again. `train` builds the state
    dict; this class keeps it, checks it belongs to the same run, and adds the run's `segments`:
    one per process that trained part of it, oldest first, each with the epochs it trained and
    `segment` (what trained them: its start time, device, commit, ...), as the record then names them."""

    def __init__(self, cfg, folder, every: int = DEFAULT_EVERY, segment: dict | None = None):
        self.run_id, self.config = cfg.run_id, cfg.to_dict()
        self.path = Path(folder) / f"{cfg.run_id}.training.pt"
        self.every = int(every)
        self.segment = dict(segment or {})
        self.earlier: list[dict] = []  # the segments of the processes that trained before this one
        self.from_epoch = 0

    def due(self, epoch: int) -> bool:
        return self.every > 0 and epoch % self.every == 0

    def segments(self, to_epoch: int, until: str | None = None) -> list[dict]:
        """The segments that trained the run up to `to_epoch`, this process's last, ending at
        `until` (an ISO time; default now)."""
        until = until or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        return [*self.earlier, {"from_epoch": self.from_epoch, "to_epoch": int(to_epoch), **self.segment,
                                "until": until}]

    def save(self, state: dict) -> Path:
        return _save_atomically({"run_id": self.run_id, "config": self.config, **_to_cpu(state),
                                 "segments": self.segments(state["epoch"])}, self.path)

    def load(self) -> dict | None:
        """The saved state, or None if there is none; a state of another config raises ValueError.
        Removes this run's temporary files that a killed writer left (the caller trains the run, so
        no other process writes them). A state saved before segments were kept names one segment
        of unknown provenance."""
        for leftover in self.path.parent.glob(f".{self.run_id}*.tmp"):
            leftover.unlink(missing_ok=True)
        if not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("run_id") != self.run_id or state.get("config") != self.config:
            raise ValueError(f"{self.path} holds the training state of another config; remove it")
        self.from_epoch = int(state["epoch"])
        self.earlier = state.get("segments") or [{"from_epoch": 0, "to_epoch": self.from_epoch}]
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
