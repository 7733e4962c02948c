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
# Every figure, table and proposition of the paper, main text and supplement, with two separate
# answers, both generated from the results store when the book is built (`python -m lrbook status`
# prints the same table, `--json` as JSON).
#
# **Coverage**: what the store holds for the item.
# * **complete**: every cell the item needs has at least 5 LRs x 3 seeds stored (for Sec. 5's
#   hyperparameter comparison, Fig. 6, 9, 20 and Table S2: every intervention has at least 4 values x 3
#   seeds in each of the paper's three ResNet18 cells);
# * **partial**: some cells have runs;
# * **pending**: nothing stored yet, or the section that would show it is not built yet;
# * **not possible here**: the data or weights cannot be obtained on the machine that builds this
#   book; the note says why;
# * **computed**: needs no stored runs, the page computes it when the book is built;
# * **nothing to reproduce**: a diagram or a set of example inputs;
# * **not described**: the paper's text never refers to the figure.
#
# **Verdict**: whether the stored runs show the paper's trend, read from the Table S1 scorecard at
# the end of this page (the same comparison the section pages show). For each cell with runs and
# each variable the item plots, the Spearman correlation of LR with the variable is scored by its 95%
# seed-bootstrap interval: above 0, the variable rises with LR as the paper says; below 0, it falls;
# including 0, no clear trend.
# * **agrees**: every (cell, variable) pair rises with LR; **disagrees**: every one falls;
# * **partly**: some do and some do not (the note names those that do not); **unclear**: none has a
#   clear trend;
# * **not scored**: the item's claim is not a Table S1 trend (its page tests it) or there are too few
#   runs to score; **not run**: no runs stored.
#
# Sec. 5's items test a different claim, that LR is the most consistent intervention: their verdict is
# page 04's for each cell with runs of an intervention (**agrees** when, in every such cell, no other
# intervention raises more of unbiased accuracy, prunability and CSI than LR does; **disagrees** when
# one does in every cell; **partly** when the cells differ). Two supplement figures test claims of
# their own, judged as page 02 judges them: Fig. 26, that the alternative compressibility measures
# rise with LR as activation compressibility does (**agrees** when every measure rises), and Fig. 27,
# that CSI goes the way of the attribution share on the core digit (**agrees** when it does in
# every cell).
#
# A complete item can agree only partly (more seeds narrow the intervals), and a partial one can
# already agree on the cells it has.

# %% tags=["parameters"]
store_dir = None  # results store; None: the repository's results/ (or $LRBOOK_STORE)

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from lrbook import ResultStore
from lrbook.status import scorecard, status_table
from lrbook.tables import html_table

store = ResultStore(store_dir)
card = scorecard(store)
table = status_table(store, card=card)


def tally(column):
    return ", ".join(f"{n} {value}" for value, n in table[column].value_counts().items())


display(Markdown(f"{len(store)} runs in the store. Coverage of the {len(table)} items: {tally('status')}. "
                 f"Verdict: {tally('verdict')}."))
problems = store.check()
if problems:
    display(Markdown(f"**Warning: the store has {len(problems)} problem(s)**, left out of every page "
                     "(`python -m lrbook status --check` lists them; a sweep retrains the runs of bad records):\n\n"
                     + "\n".join(f"* {line}" for line in problems)))

# %% [markdown]
# ## Verdict

# %% tags=["hide-input"]
display(html_table(table[["item", "shows", "section", "verdict", "verdict_note"]]
                   .rename(columns={"verdict_note": "why"}), wrap=("shows", "why")))

# %% [markdown]
# ## Coverage

# %% tags=["hide-input"]
display(html_table(table[["item", "section", "status", "scale", "runs", "lrs", "seeds", "note"]]
                   .rename(columns={"status": "coverage", "lrs": "LRs"}), wrap=("note",)))

# %% [markdown]
# ## Table S1 scorecard
# For every cell with stored runs: the paper's range of each variable beside ours, the Spearman
# correlation of LR with the variable (95% seed-bootstrap interval) and whether its direction
# agrees with the paper's claim that every variable rises with LR. Diverged runs, and runs that
# stopped at the epoch cap below 99.9% training accuracy (under-trained; the paper trains to 100%),
# are counted but left out of the comparison.

# %% tags=["hide-input"]
from lrbook.prose import coverage_note
from lrbook.selection import select_runs
from lrbook.vocabulary import cell_title

df = store.to_frame()
if card.empty:
    display(Markdown("No runs stored yet."))
else:
    per_cell = ["dataset", "model", "scale", "runs", "lrs", "seeds", "left_out"]
    for (d, m, s), rows in card.groupby(["dataset", "model", "scale"], sort=True):
        display(Markdown(f"**{cell_title(d, m)}**. {coverage_note(select_runs(df, (d, m), scale=s), s)}"))
        display(html_table(rows.drop(columns=per_cell)))
