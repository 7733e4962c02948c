# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Reproduction status
#
# Every figure and table of the paper, and what the results store holds for it. Generated from the
# store when the book is built (`python -m lrbook status` prints the same table, `--json` as JSON).
#
# * **reproduced**: every cell the item needs has at least 5 LRs x 3 seeds stored;
# * **partial**: some cells have runs;
# * **pending**: nothing stored yet, or the section is not built yet;
# * **not possible here**: the data or weights cannot be obtained on the machine that builds this
#   book; the note says why and the code path says how to run it elsewhere.

# %% tags=["parameters"]
store_dir = None  # results store; None: the repository's results/ (or $LRBOOK_STORE)

# %%
import pandas as pd
from IPython.display import Markdown, display

from lrbook import ResultStore
from lrbook.status import status_table

store = ResultStore(store_dir)
table = status_table(store)
counts = table.status.value_counts()
display(Markdown(f"{len(store)} runs in the store; " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "."))
with pd.option_context("display.max_colwidth", None):
    display(table.astype(object).fillna("").style.hide(axis="index"))

# %% [markdown]
# ## Table S1 scorecard
# For every cell with stored runs: the paper's range of each variable beside ours, the Spearman
# correlation of LR with the variable (95% seed-bootstrap interval) and whether its direction
# agrees with the paper's claim that every variable rises with LR. Diverged runs, and runs that
# stopped at the epoch cap below 99.9% training accuracy (under-trained; the paper trains to 100%),
# are counted but left out of the comparison.

# %%
from lrbook.reference import DATASET_NAMES, MODEL_NAMES, compare_with_paper
from lrbook.report import coverage_note

df = store.to_frame()
cells = [] if df.empty else sorted({(d, m, s) for d, m, s in zip(df.dataset, df.model, df.scale)})
if not cells:
    display(Markdown("No runs stored yet."))
for d, m, s in cells:
    sub = df[(df.dataset == d) & (df.model == m) & (df.scale == s)]
    display(Markdown(f"**{DATASET_NAMES.get(d, d)} / {MODEL_NAMES.get(m, m)}**. {coverage_note(sub, s)}"))
    display(compare_with_paper(sub, d, m).round(3).style.hide(axis="index"))
