"""The paper's own numbers: Tables S1 and S2 (supplement D.3), as shipped in `lrbook/reference/`."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .vocabulary import METRIC_LABELS, S1_METRICS, dataset_name, model_name

REFERENCE_DIR = Path(__file__).parent / "reference"


@lru_cache(maxsize=None)
def table_s1():
    """Table S1: min/max of every plotted variable per dataset x model cell (paper units: acc in %)."""
    import pandas as pd

    return pd.read_csv(REFERENCE_DIR / "table_s1.csv")


@lru_cache(maxsize=None)
def table_s2():
    """Table S2: value ranges of the hyperparameter comparison (supplement D.3)."""
    import pandas as pd

    return pd.read_csv(REFERENCE_DIR / "table_s2.csv")


def table_s2_row(dataset: str, intervention: str):
    """The Table S2 row of an intervention (`vocabulary.INTERVENTIONS` key) on a dataset, or None."""
    from .vocabulary import INTERVENTIONS

    t = table_s2()
    rows = t[(t.dataset == dataset_name(dataset)) & (t.intervention == INTERVENTIONS[intervention])]
    return None if rows.empty else rows.iloc[0]


def paper_row(dataset: str, model: str):
    """The Table S1 row of a cell, or None if the paper has no such cell."""
    t = table_s1()
    rows = t[(t.dataset == dataset_name(dataset)) & (t.model == model_name(model))]
    return None if rows.empty else rows.iloc[0]


def paper_lr_grid(dataset: str, model: str, n: int = 5) -> list[float]:
    """n log-spaced LRs spanning the paper's LR range for a cell (Table S1), 1 significant digit
    except the end points, which are the paper's own."""
    ref = paper_row(dataset, model)
    if ref is None:
        raise KeyError(f"Table S1 has no cell {dataset}/{model}")
    lo, hi = float(ref.lr_min), float(ref.lr_max)
    inner = np.geomspace(lo, hi, n)[1:-1]
    return [lo] + [float(f"{v:.1g}") for v in inner] + [hi]


def paper_reference_table(dataset: str, model: str):
    """Table S1's row for a cell as a two-column table (variable, paper range)."""
    import pandas as pd

    ref = paper_row(dataset, model)
    if ref is None:
        return pd.DataFrame()
    rows = [{"variable": "LR range", "paper min": ref.lr_min, "paper max": ref.lr_max}]
    for prefix, (col, _) in S1_METRICS.items():
        rows.append({"variable": METRIC_LABELS[col], "paper min": ref[f"{prefix}_min"], "paper max": ref[f"{prefix}_max"]})
    return pd.DataFrame(rows)
