"""What a section page calls to put a `figures.Figure` on the page: notes, the plot, its caption,
then its tables (no index column), and `train_missing` for a page asked to train."""
from __future__ import annotations


def show(figure, wrap=()) -> None:
    """Display `figure` (a `figures.Figure`): notes, the plot, the caption, then each table under
    its name."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    from .tables import html_table

    for note in figure.notes:
        display(Markdown(note))
    if figure.plot is not None and figure.data is not None:
        figure.plot(figure.data)
        plt.show()
    if figure.caption:
        display(Markdown(figure.caption))
    for name, table in figure.tables.items():
        if table is not None and len(table):
            display(Markdown(f"*{name}*"))
            display(html_table(table, wrap=wrap))


def show_table(table, title: str = "", wrap=()) -> None:
    """A frame as a book table (`tables.html_table`) under an optional title."""
    from IPython.display import Markdown, display

    from .tables import html_table

    if title:
        display(Markdown(title))
    display(html_table(table, wrap=wrap))


def train_missing(store, cells, lrs, seeds, scale, **sweep_args) -> str:
    """Train the runs of `cells` x `lrs` x `seeds` at `scale` that the store lacks; `lrs` maps a cell to
    its LRs (or is one list for all). Returns the sweep's report; nothing to train says so."""
    from .config import grid
    from .sweep import run_sweep

    configs = [c for d, m in cells for c in grid(d, m, lrs=lrs[(d, m)] if isinstance(lrs, dict) else lrs,
                                                 seeds=seeds, scale=scale)]
    if not configs:
        return "Rendering from the results store (nothing to train)."
    return str(run_sweep(configs, store, **sweep_args))


def lrs_to_train(store, cell, scale, lr=None, lrs=None, default=()) -> list[float]:
    """The LRs a page trains for one cell: `lr`, else `lrs`, else the LRs the cell already has at
    `scale` (to complete their seeds), else `default`."""
    if lr is not None:
        return [lr]
    if lrs:
        return list(lrs)
    from .selection import select_runs

    have = select_runs(store.to_frame(), cell, scale=scale)
    return sorted(float(v) for v in have.lr.unique()) if len(have) else list(default)
