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
# # Synthetic experiments: parity and moon-star
#
# **Paper:** Sec. 5, Fig. 3 (parity) and supplement Fig. 15 (moon-star).
# **Claim:** with a fully connected network, larger learning rates give higher unbiased test
# accuracy *and* higher compressibility (prunability, activation compressibility), and the
# network's attribution moves from the spurious to the core feature during training.
#
# Both tasks have a simple spurious feature that predicts the label on all but a fraction $r$ of
# the training set (the bias-conflicting, BC, samples), and a harder core feature that always does:
#
# * **Parity** (Qiu et al. 2024): $x = [x_\text{core}, x_\text{spur}] \in \{-1,1\}^{20}$; the label
#   is the parity of the first 4 core bits, the spurious label the parity of the first 2 spurious
#   bits; the other 14 bits are noise. 10 000 / 10 000 samples, FCN with 3 hidden layers of 200.
# * **Moon-star** (Geirhos et al. 2020): a crescent or a star on a 64x64 binary image; in training
#   moons sit top-left/bottom-right and stars top-right/bottom-left, except for the BC samples.
#   4000 / 4000 samples, the same FCN.
#
# Both use $r = 5\%$ (our choice: the paper's text available to this project does not give the BC
# ratio of the synthetic sets; see {ref}`definitions-choices`), SGD with a constant LR,
# batch 100, no momentum or weight decay, until 100% training accuracy. The test sets are unbiased:
# the spurious label is drawn independently of the class, so about half of each test set is BC.
# Exact definitions: {ref}`definitions-datasets` (items 1 and 2) and {ref}`definitions-metrics` on
# the Definitions page.
#
# This page renders from the results store. To train instead, run it with papermill, e.g.
# `papermill notebooks/01_synthetic.ipynb out.ipynb -p lr 0.05` trains the missing seeds of LR 0.05
# for both datasets and then renders everything stored.

# %% tags=["parameters"]
dataset = "all"  # "parity", "moon_star" or "all"
lr = None  # train this LR's missing runs (e.g. -p lr 0.05), then render
lrs = None  # or a list of LRs to train
train = False  # True: train the missing runs of the paper's LR grid
seeds = [0, 1, 2]
scale = "paper"  # "smoke" (seconds), "cpu" or "paper"; the synthetic tasks run at paper scale on a CPU
device = "auto"  # "cpu", "cuda" or "auto"
workers = 1  # parallel training processes
store_dir = None  # results store; None: the repository's results/ (or $LRBOOK_STORE)
data_root = None  # unused here (the data is generated), kept for a uniform interface
show_explorer = False  # True in a live notebook: an LR slider over the stored runs

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from lrbook import ResultStore, grid
from lrbook.config import check_names
from lrbook.plots import (LR_EFFECT_METRICS, format_summary, lr_explorer, lr_summary, plot_attribution_trace,
                          plot_lr_effects, plot_pruning_curves)
from lrbook.reference import compare_with_paper
from lrbook.report import (cell_frame, coverage_note, low_high_records, no_data_message, paper_reference_table,
                           run_table)
from lrbook.sweep import run_sweep

check_names(dataset=dataset, scale=scale, datasets=("parity", "moon_star"))
PAPER_LRS = [0.01, 0.03, 0.1, 0.3, 0.75]  # spans Table S1's 0.01 to 0.75 for both datasets
DATASETS = ["parity", "moon_star"] if dataset == "all" else [dataset]
store = ResultStore(store_dir)

# %% [markdown]
# ## Training what is missing
# Nothing is trained unless the parameters ask for it; runs already in the store are never
# trained again.

# %%
to_train = [lr] if lr is not None else list(lrs or []) + (PAPER_LRS if train else [])
if to_train:
    configs = [c for d in DATASETS for c in grid(d, "fcn", lrs=to_train, seeds=seeds, scale=scale)]
    print(run_sweep(configs, store, workers=workers, device=device, data_root=data_root))
else:
    print("Rendering from the results store (nothing to train).")

# %% [markdown]
# ## Parity (Fig. 3)
#
# Left: unbiased test accuracy, prunability (mean accuracy retained after removing 10% to 90% of
# each layer's neurons, no fine-tuning) and activation compressibility (how well 10% of the
# penultimate activations approximate all of them) against LR, each normalised to [0, 1] as in the
# paper; line = mean over seeds, band = one standard deviation (clipped to the axes when a metric
# barely moves, which makes its normalised spread large). Middle and right: share of
# Integrated-Gradients attribution on the core, spurious and noise bits over training, for the
# lowest and the highest stored LR (200 test inputs). The raw values follow in the table.

# %%
def show_cell(name: str, title: str):
    df = cell_frame(store, name, "fcn", scale)
    if df.empty:
        display(Markdown(no_data_message(name, "fcn", scale, "notebooks/01_synthetic.ipynb")))
        display(paper_reference_table(name, "fcn"))
        return df
    display(Markdown(coverage_note(df, scale)))
    low, high = low_high_records(store, df)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    plot_lr_effects(df, LR_EFFECT_METRICS, ax=axes[0], title=f"{title}: LR effects")
    for ax, rec, which in ((axes[1], low, "lowest"), (axes[2], high, "highest")):
        plot_attribution_trace(rec, ax=ax, which=which)
    plot_pruning_curves([store.get(r) for r in df.run_id], ax=axes[3], title="accuracy vs pruning")
    fig.suptitle(f"{title}, FCN: {len(df)} runs at scale '{scale}', seeds {sorted(int(s) for s in df.seed.unique())}")
    fig.tight_layout()
    plt.show()
    display(format_summary(lr_summary(df, LR_EFFECT_METRICS + ("test_bc_acc", "max_bc_loss_ratio")),
                           LR_EFFECT_METRICS + ("test_bc_acc", "max_bc_loss_ratio"),
                           percent=("test_acc", "test_bc_acc")))
    return df


parity = show_cell("parity", "Parity") if "parity" in DATASETS else None

# %% [markdown]
# ### Parity against Table S1
# The paper's min/max of each variable over its LR range (0.01 to 0.75) beside ours (min/max over
# our per-LR means). `spearman` is the rank correlation of LR with the metric over all runs, with
# a 95% interval from resampling seeds within each LR; `agrees` says whether the interval lies above
# zero, as the paper's claim (every variable rises with LR) predicts.

# %%
if parity is not None and not parity.empty:
    display(compare_with_paper(parity, "parity", "fcn").round(3))

# %% [markdown]
# ## Moon-star (Fig. 15)
#
# The same panels. On moon-star the shape (core) and the position (spurious) are carried by the
# same pixels, and with a zero baseline Integrated Gradients puts all attribution on the object, so
# a pixel-region split cannot separate them. The middle panels therefore track the behavioural
# signature instead: test accuracy on bias-aligned (BA) and bias-conflicting (BC) samples over
# training; a model that follows the quadrant scores high on BA and low on BC.

# %%
moon = show_cell("moon_star", "Moon-star") if "moon_star" in DATASETS else None

# %%
if moon is not None and not moon.empty:
    display(compare_with_paper(moon, "moon_star", "fcn").round(3))

# %% [markdown]
# ## Explore the runs
# In a live notebook set `show_explorer = True` for a slider over the stored LRs. The built book
# has no kernel, so it shows the per-run table instead.

# %%
for name, df in (("parity", parity), ("moon_star", moon)):
    if df is None or df.empty:
        continue
    if show_explorer:
        display(lr_explorer(store, df))
    else:
        cols = ["lr", "seed", "status", "epochs", "test_acc", "test_bc_acc", "prunability", "act_compressibility"]
        display(Markdown(f"**{name}**: every stored run"))
        display(run_table(df, cols))
