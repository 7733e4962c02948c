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
# The paper's text available to this project does not give the BC ratio of the synthetic sets.
# Parity uses $r = 3\%$, calibrated to Table S1 (section *Parity's difficulty* below); moon-star
# uses $r = 5\%$ (see {ref}`definitions-choices`). Both train with SGD at a constant LR,
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
calibrate = False  # True: train the missing runs of parity's calibration (below), at paper scale
seeds = [0, 1, 2]
scale = "paper"  # "smoke" (seconds), "cpu" or "paper"; the synthetic tasks run at paper scale on a CPU
device = "auto"  # "cpu", "cuda" or "auto"
workers = 1  # parallel training processes
store_dir = None  # results store; None: the repository's results/ (or $LRBOOK_STORE)
data_root = None  # unused here (the data is generated), kept for a uniform interface
show_explorer = False  # True in a live notebook: an LR slider over the stored runs

# %% tags=["hide-input"]
# %matplotlib inline
from IPython.display import display

from lrbook import ResultStore
from lrbook.book import show, show_table, train_missing
from lrbook.config import check_names
from lrbook.calibration import calibration_plan
from lrbook.figures import parity_calibration, synthetic_cell
from lrbook.sweep import run_sweep
from lrbook.plots import lr_explorer
from lrbook.selection import select_runs
from lrbook.tables import run_table
from lrbook.vocabulary import SYNTHETIC, SYNTHETIC_LRS, cell_title

check_names(dataset=dataset, scale=scale, datasets=SYNTHETIC)
DATASETS = list(SYNTHETIC) if dataset == "all" else [dataset]
store = ResultStore(store_dir)

# %% [markdown]
# ## Training what is missing
# Nothing is trained unless the parameters ask for it; runs already in the store are never
# trained again.

# %% tags=["hide-input"]
to_train = [lr] if lr is not None else list(lrs or []) + (list(SYNTHETIC_LRS) if train else [])
print(train_missing(store, [(d, "fcn") for d in DATASETS], to_train, seeds, scale, workers=workers, device=device,
                    data_root=data_root))
if calibrate:
    print("parity calibration:", run_sweep(calibration_plan(), store, workers=workers, device=device))

# %% [markdown]
# ## Parity (Fig. 3)
#
# Top left: unbiased test accuracy, prunability (mean accuracy retained after removing 10% to 90%
# of each layer's neurons, no fine-tuning) and activation compressibility (how well 10% of the
# penultimate activations approximate all of them) against LR, each normalised to [0, 1] as in the
# paper; line = mean over seeds, band = one standard deviation (clipped to the axes when a metric
# barely moves, which makes its normalised spread large). Top right: unbiased accuracy against the
# fraction of neurons pruned, one line per LR. Bottom: share of Integrated-Gradients attribution on
# the core, spurious and noise bits over training, for the lowest and the highest stored LR (200
# test inputs). The raw values follow in the tables, then the paper's Table S1 range beside ours
# (min to max over our per-LR means): *Spearman* is the rank correlation of LR with the metric over
# all runs, with a 95% interval from resampling seeds within each LR; *agrees* says whether the
# interval lies above zero, as the paper's claim (every variable rises with LR) predicts.

# %% tags=["hide-input"]
if "parity" in DATASETS:
    show(synthetic_cell(store, "parity", scale, "Fig. 3"))

# %% [markdown]
# ## Parity's difficulty, calibrated to Table S1
#
# The paper does not state parity's core degree $k$, spurious degree $m$, number of noise bits or
# BC ratio $r$ (our copy of its text lost the symbols: "binary vectors of size [..] and [..]",
# "bias-conflicting sample ratios as [..] and [..]"). The setting we started from (10 bits per
# block, $k = 4$, $m = 2$, $r = 5\%$, from REPRODUCTION_SPEC) proved much easier than the paper's: at
# its lowest LR (0.01) the paper's FCN reaches 55.31% unbiased accuracy, barely above chance. We calibrate on that one number
# only: first one knob at a time from our setting (seed 0), towards a harder core ($k = 5$), a
# stronger shortcut ($m = 1$, $r = 1\%$) or more noise (34 noise bits), then finer steps of the knob
# whose steps bracket the target, with three seeds where they come close. The rest of Table S1's
# parity row (its high-LR accuracy, prunability, compressibility, CSI, class separation) is not fitted: it
# tests the calibrated setting. The first table lists every setting tried at LR 0.01; then, for every
# setting with a full LR sweep, Table S1 beside ours. The page's parity (Fig. 3 above, the
# scorecard) is the setting marked *preset*; why it is that one: {ref}`definitions-choices`.
# `-p calibrate True` trains whatever of this calibration the store lacks.

# %% tags=["hide-input"]
if "parity" in DATASETS and scale == "paper":
    show(parity_calibration(store, scale))

# %% [markdown]
# ## Moon-star (Fig. 15)
#
# The same panels. On moon-star the shape (core) and the position (spurious) are carried by the
# same pixels, and with a zero baseline Integrated Gradients puts all attribution on the object, so
# a pixel-region split cannot separate them. The bottom panels therefore track the behavioural
# signature instead: test accuracy on bias-aligned (BA) and bias-conflicting (BC) samples over
# training; a model that follows the quadrant scores high on BA and low on BC.

# %% tags=["hide-input"]
if "moon_star" in DATASETS:
    show(synthetic_cell(store, "moon_star", scale, "Fig. 15"))

# %% [markdown]
# ## Explore the runs
# In a live notebook set `show_explorer = True` for a slider over the stored LRs. The built book
# has no kernel, so it shows the per-run table instead.

# %% tags=["hide-input"]
RUN_COLUMNS = ["lr", "seed", "status", "epochs", "test_acc", "test_bc_acc", "prunability", "prunability_global",
               "act_compressibility"]
for d in DATASETS:
    runs = select_runs(store.to_frame(), (d, "fcn"), scale=scale)
    if runs.empty:
        continue
    if show_explorer:
        display(lr_explorer(store, runs))
    else:
        show_table(run_table(runs, RUN_COLUMNS), f"**{cell_title(d, 'fcn')}**: every stored run")
