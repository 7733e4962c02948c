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
# # The mechanism: confident mispredictions reweight the minibatch
#
# **Paper:** Sec. 6, Proposition 1 (proof in supplement D.1), Proposition 2 (D.2), Fig. 12, Fig. 13,
# Fig. 18, and the supplement's paragraph "Mechanism of LR's Effects".
# **Claim:** a network first learns the simple spurious feature, so bias-aligned (BA) samples are
# predicted correctly and bias-conflicting (BC) samples wrongly. Large LRs grow the logits fast;
# with cross-entropy, up-scaled logits make the BC mispredictions *confident*, so the few BC samples
# come to dominate the minibatch loss and its gradient, an implicit reweighting towards BC samples
# that pushes the network off the spurious rule. Small LRs lack this pressure and let the network
# memorise the BC samples while keeping its spurious subnetwork.
#
# The paper's text available to this project does not include its equations, so the propositions
# are evaluated below as the paper describes them in words; `lrbook/theory.py` documents exactly
# what is computed.
# Everything measured on trained networks comes from the results store; nothing is trained here.

# %% tags=["parameters"]
store_dir = None  # results store; None: the repository's results/ (or $LRBOOK_STORE)
datasets = "all"  # "all", one dataset name, or a comma-separated list (e.g. "parity,colored_mnist")
low_lr = None  # LR shown as "low" in Fig. 13 and the BA/BC comparison; None: the lowest stored per cell
high_lr = None  # likewise "high"; None: the highest stored per cell
scale = None  # "paper", "cpu" or "smoke"; None: each cell at its most faithful stored scale

# %% tags=["hide-input"]
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from lrbook import ResultStore
from lrbook.book import show, show_table
from lrbook.config import check_names
from lrbook.figures import (Figure, ba_bc_comparison, max_bc_ratio, mechanism_runs, neuron_persistence_figures,
                            prop1_table, prop2_shares, training_dynamics, unit_reset_figures)
from lrbook.mechanism_plots import plot_bc_loss_share
from lrbook.prose import cells_phrase, figure_caption, plural
from lrbook.selection import stored_cells
from lrbook.vocabulary import DATASETS, FIG13_CELLS

check_names(dataset=datasets, scale=scale)
DATASETS = list(DATASETS) if datasets == "all" else (
    [d.strip() for d in datasets.split(",")] if isinstance(datasets, str) else list(datasets))
store = ResultStore(store_dir)
runs, left_out = mechanism_runs(store, DATASETS, scale)
if len(runs) or left_out:
    display(Markdown(f"Rendering from the results store: {plural(len(runs), 'run')} in "
                     f"{plural(len(stored_cells(runs)), 'cell')}: {cells_phrase(runs)}."))
else:
    display(Markdown("**No runs are stored** for the selected datasets" + (f" at scale `{scale}`" if scale else "")
                     + ". Sections 1 and 2 below are computations, not training runs, and still render; the figures "
                     "from training runs (Fig. 12, 13 and the BA/BC loss ratio) are empty. Train runs with notebooks 01/02."))
if left_out:
    display(Markdown("**Left out of the sections on training runs below:** " + " ".join(left_out)))

# %% [markdown]
# ## 1. Proposition 1: the BC share of the minibatch loss grows with the logit scale
# A binary minibatch of 100 samples; the predictor follows the spurious rule, so each BC sample is
# wrong with logit margin $s\,m_{BC}$ and each BA sample right with margin $s\,m_{BA}$, where $s$ is
# the logit-scaling factor. The CE loss of a BC sample is $\mathrm{softplus}(s\,m_{BC})$, growing
# linearly in $s$, that of a BA sample $\mathrm{softplus}(-s\,m_{BA})$, vanishing exponentially; so
# the BC share of the loss starts at the BC fraction ($s=0$: every loss is $\log 2$) and tends to 1.
# Exact values, no simulation.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
for ax, (m_bc, m_ba) in zip(axes, [(1.0, 1.0), (0.5, 2.0), (2.0, 0.5)]):
    plot_bc_loss_share(np.linspace(0, 10, 201), (0.01, 0.05, 0.1), m_bc, m_ba, ax=ax)
fig.tight_layout()
show(Figure(figure_caption("Prop. 1", "share of the minibatch CE loss from BC samples against the logit scale s, "
                           "batch 100, three pairs of margins (computed exactly, no runs)"), fig, lambda f: f,
            tables={"BC share of the loss, margins 1 and 1": prop1_table()}))

# %% [markdown]
# ## 2. Proposition 2: BC samples dominate the gradients of both subnetworks
# A *bias-decomposable* network (Definition 1, D.2): $f(x) = s\,(f_\text{core}(x_\text{core}) +
# f_\text{spur}(x_\text{spur}))$ with two bias-free one-hidden-layer ReLU branches (8 units each) on
# separate 10-dimensional core and spurious feature blocks. The branches are constructed, not trained,
# so the core branch favours the true class by 0.5 and the spurious branch the spurious label by 2 on
# every sample: the network predicts by the spurious rule (BA right with margin $2.5s$, BC wrong with
# margin $1.5s$). For one minibatch of 100 samples with BC fraction $r$, autograd gives, per branch,
# the Frobenius norm of the gradient of the mean CE loss, and the share of the summed per-sample
# gradient norms that comes from BC samples. Deterministic (seed 0, float64).

# %% tags=["hide-input"]
show(prop2_shares())

# %% [markdown]
# At small $s$ the BC share of each branch's gradient is close to the BC fraction; once $s$ is a few
# units it approaches 1 and both gradient norms grow linearly in $s$ (the BA contribution dies off
# exponentially). In between, BA and BC contributions to the spurious branch point in opposite
# directions and partly cancel in the minibatch gradient, hence the dip of its norm.

# %% [markdown]
# ## 3. Maximum BC loss ratio vs unbiased test accuracy (Fig. 12)
# For every run, the largest BC loss ratio (BC samples' loss / total minibatch loss) met in any
# minibatch during training, against the run's unbiased test accuracy; one panel per stored cell,
# colour = LR (log scale). The paper (ResNet18 on several datasets) finds a very strong positive
# correlation. The table gives Pearson and Spearman correlations over the runs of each cell.

# %% tags=["hide-input"]
show(max_bc_ratio(runs))

# %% [markdown]
# ## 4. Training dynamics at a low and a high LR (Fig. 13)
# The paper shows ResNet18 on Colored MNIST (and CIFAR-10); here Colored MNIST with ResNet18 and with
# the FCN, and Parity / FCN, where stored. Per-epoch averages plotted at the training step that ends
# each epoch (log axis: low-LR runs train much longer; the first epoch is a single point, so the
# within-epoch dynamics of the first minibatches are averaged away): mean loss of BC and BA samples,
# the BC loss ratio (epoch mean and epoch maximum over minibatches), the mean logit norm, and the
# share of attribution on the spurious (and core) feature from the runs' attribution probes (step 0,
# every power of two, the end):
#
# * **Parity:** Integrated Gradients mass on the spurious (and core) bits.
# * **Colored MNIST:** colour and shape share the same pixels, so a pixel map cannot separate them.
#   The share is that of the spurious feature in a two-feature Shapley decomposition of the
#   true-class logit on 200 test inputs, where a feature is "absent" when it is taken from another
#   test input (the digit's strokes recoloured with another image's colour, or another digit drawn
#   in this image's colour), averaged over 8 partners: `lrbook.attribution.feature_shapley`.
#
# Every stored seed of each LR is drawn (first seed opaque, others faint); a seed trained with
# attribution probes is preferred to an identical run without them. Where the notebook's `low_lr` /
# `high_lr` are not given, a cell whose runs have probes at two or more LRs shows the lowest and
# highest of those.

# %% tags=["hide-input"]
for cell in [c for c in FIG13_CELLS if c[0] in DATASETS]:
    show(training_dynamics(store, runs, cell, low_lr, high_lr))

# %% [markdown]
# ## 5. Stability of class- and bias-dominant neurons (Fig. 18, top)
# The paper tracks, for ResNet18 on Colored MNIST, each last-layer filter's class selectivity (CSI)
# and bias selectivity (BSI) during training, calls a filter *class-dominant* when CSI > BSI and
# *bias-dominant* otherwise, and asks: of the filters that are class-dominant at step t, what share
# is still class-dominant at the end (and likewise for bias-dominant ones)? It finds that at a high
# LR class-dominant filters almost all stay so early on, while bias-dominant ones do not.
#
# Runs trained with `neuron_probes=True` log every penultimate unit's CSI and BSI (1000 test inputs)
# at step 0, every power of two and the end. Here those are the **parity FCN** (200 units) and the
# **Colored MNIST FCN** at `cpu` scale (1024 units), not the paper's ResNet18 / Colored MNIST, whose
# runs need a GPU. The bottom panel of Fig. 18 is section 6.

# %% tags=["hide-input"]
persistence = neuron_persistence_figures(store)
for figure in persistence:
    show(figure)
if not persistence:
    display(Markdown("**No runs with neuron probes are stored**, so Fig. 18 is not shown. Train some with "
                     "`python -m lrbook sweep`-style code and `neuron_probes=True` (see the text above)."))

# %% [markdown]
# ## 6. Large updates reset a unit's spurious use (Fig. 18, bottom)
# The paper follows single units of an FCN on Colored MNIST at a high LR: a unit's use of the
# spurious feature (from feature attribution) creeps up, then one large gradient update to that
# unit knocks it back down, which the paper reads as BC samples "resetting" spurious subnetworks.
#
# Runs trained with `unit_trace_every=N` (FCN on Colored or Double MNIST) log, every N steps, for the
# first 128 units of the last hidden layer: the unit's **spurious share** (the feature-Shapley
# decomposition of section 4 applied to the unit's activation, 100 test inputs, 4 partners) and the
# **size of the updates** to its incoming weights since the previous point (sum over steps of
# lr·‖gradient of its weight row‖). The top panels show the four units with the largest single drop
# in spurious share; the table tests the claim over all units: among intervals that begin with an
# above-median spurious share, do the largest 5% of updates lower the share more often than the others?

# %% tags=["hide-input"]
resets, reset_table, reset_text = unit_reset_figures(store)
for figure in resets:
    show(figure)
if resets:
    show_table(reset_table)
    display(Markdown(reset_text))
else:
    display(Markdown("**No runs with unit traces are stored**, so Fig. 18 (bottom) is not shown. Train one, e.g. "
                     "`run_experiment(make_config('colored_mnist', 'fcn', lr=0.5, scale='cpu', unit_trace_every=20))`."))

# %% [markdown]
# ## 7. Average BA loss / average BC loss at low vs high LR
# The supplement tests the claim (Puli et al.) that large LRs help by bringing the average losses of
# BA and BC samples closer (a more uniform margin), and reports the opposite on Colored MNIST and
# Double MNIST: there, *low* LRs give a BA/BC loss ratio closer to 1. Here, per run, the ratio is the
# mean over training epochs of the BA loss divided by the mean of the BC loss (`mean`), and, as a
# check, the same ratio in the last epoch with BC samples (`final`); closeness to 1 is measured in
# orders of magnitude, $|\log_{10}\text{ratio}|$. The sentences below are generated from the numbers.

# %% tags=["hide-input"]
ba_bc_table, ba_bc_text = ba_bc_comparison(store, runs, low_lr, high_lr)
if len(ba_bc_table):
    show_table(ba_bc_table)
    display(Markdown(ba_bc_text))
else:
    display(Markdown("No stored run reached 100% training accuracy: the BA/BC loss ratio cannot be computed."))
