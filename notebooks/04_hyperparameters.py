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
# # Large LRs against other hyperparameters and regularisers
#
# **Paper:** Sec. 5 ("How does LR behave when compared to and combined with other
# hyperparameters?"), Fig. 6, 9 and 20, supplement D.3 (Table S2).
# **Claim:** compared with batch size, momentum, L1 and L2 regularisation, focal loss and ASAM,
# "high LRs consistently facilitate a combination of OOD generalization, network compressibility,
# and core feature utilization, either on par with or surpassing other interventions", and other
# interventions (L2) combined with a high LR give "even better trade-offs".
#
# Each intervention varies its own hyperparameter over Table S2's range with the LR fixed; every
# run is an ordinary record of the results store, keyed by its config. Our reading of Table S2
# (argued on the [Definitions](../definitions.md) page, section 4):
#
# * every intervention runs at the **low end of the cell's LR range** (0.001 for ResNet18 on all
#   three datasets): at its weakest setting each reaches the lowest-LR accuracy of the LR sweep.
#   The FCN at `cpu` scale cannot train to 100% there within its epoch cap, so its low LR is the
#   lowest of its `cpu` sweep at which every seed does (0.05 on Colored MNIST, 0.02 on Double MNIST);
# * **High LR + L2** fixes the LR at the **high end** (0.15 on Colored MNIST) and varies the L2
#   coefficient (1e-5 to 1e-3);
# * the **batch-size** column, 0.01 to 0.3333, is **1 / batch size**: batch 100 (the paper's
#   default) down to batch 3;
# * L2 is SGD's weight decay (the gradient of (wd / 2) ||w||², the same thing for SGD without
#   momentum), L1 adds λ Σ|w| to the loss, focal loss is Lin et al.'s softmax form
#   −(1 − p_t)^γ log p_t, and ASAM is Kwon et al.'s adaptive step with η = 0.01.
#
# Fig. 6 shows the page's cell, Fig. 20 every other cell with intervention runs. Fig. 9 is our
# reading of "how different methods create robustness through different dynamics in the loss and
# feature utilization landscape": the per-epoch share of the loss carried by bias-conflicting (BC)
# samples (Sec. 6's mechanism) and the BC and bias-aligned (BA) losses, per intervention, with each
# value's final accuracy and CSI in a table. Exact definitions are on the
# [Definitions](../definitions.md) page.

# %% tags=["parameters"]
dataset = "colored_mnist"  # colored_mnist, double_mnist, mnist_cifar (Table S2's datasets), or another
model = "resnet18"  # the paper's model here; fcn trains on a CPU
intervention = None  # train this intervention's missing runs (e.g. -p intervention momentum, or "all"), then render
values = None  # its hyperparameter values (Table S2's encoding); None: 5 spanning Table S2's range
seeds = [0, 1, 2]
scale = None  # render: the most faithful scale with intervention runs; train: "paper" on a GPU, else "cpu"
device = "auto"
workers = 1
store_dir = None
data_root = None  # folder with MNIST/ (torchvision layout); None: $LRBOOK_DATA or ./data

# %% tags=["hide-input"]
# %matplotlib inline
import torch
from IPython.display import Markdown, display

from lrbook import ResultStore
from lrbook.book import show, show_table
from lrbook.config import ConfigError, check_names
from lrbook.figures import intervention_cells, intervention_dynamics, intervention_panels, paper_table_s2
from lrbook.interventions import hyperparameter_grid, intervention_config
from lrbook.vocabulary import INTERVENTIONS

check_names(dataset=dataset, model=model, scale=scale)
if intervention is not None and intervention != "all" and intervention not in INTERVENTIONS:
    raise ConfigError(f"unknown intervention {intervention!r}; choose one of {', '.join(INTERVENTIONS)} or 'all'")
CELL = (dataset, model)
store = ResultStore(store_dir)

# %% [markdown]
# ## Training what is missing
# Nothing is trained unless an intervention is named; then only the runs the store lacks.

# %% tags=["hide-input"]
if intervention is not None:
    from lrbook.data import require_data
    from lrbook.sweep import run_sweep

    train_scale = scale or ("paper" if torch.cuda.is_available() else "cpu")
    require_data([dataset], data_root)
    names = list(INTERVENTIONS) if intervention == "all" else [intervention]
    configs = [intervention_config(dataset, model, name, v, seed=s, scale=train_scale)
               for name in names for v in (values or hyperparameter_grid(name, dataset)) for s in seeds]
    print(f"training at scale {train_scale!r}:", run_sweep(configs, store, workers=workers, device=device,
                                                          data_root=data_root))
else:
    print("Rendering from the results store (nothing to train).")
frame = store.to_frame()

# %% [markdown]
# ## Each intervention against robustness, compressibility and core-feature use (Fig. 6)
# One panel per intervention: unbiased test accuracy, prunability and average CSI against its
# hyperparameter, each normalised to [0, 1] as in the paper (line: mean over seeds; band: one sd);
# diverged runs and runs stopped at the epoch cap short of 100% training accuracy are left out.
# Below: Table S2 beside ours, with the Spearman correlation of each variable with the
# hyperparameter and its 95% seed-bootstrap interval, and the verdict on the paper's claim. A
# variable "rises" when the interval lies above 0; an intervention with fewer than three values
# that count is shown but not scored, since two values show which is higher, not a trend. The
# verdict is then tried again with each hyperparameter value left out in turn (all its seeds), and
# the sentence says which single values change it: a verdict that one value decides is fragile.

# %% tags=["hide-input"]
show(intervention_panels(frame, CELL, "Fig. 6"))

# %% [markdown]
# ## Training dynamics per intervention (Fig. 9)

# %% tags=["hide-input"]
show(intervention_dynamics(store, frame, CELL))

# %% [markdown]
# ## Other datasets and models (Fig. 20)

# %% tags=["hide-input"]
others = [c for c in intervention_cells(frame) if c != CELL]
for cell in others:
    show(intervention_panels(frame, cell, "Fig. 20"))
if not others:
    display(Markdown("No other cell has intervention runs yet. The paper's values for the datasets of Table S2:"))
    for d in ("mnist_cifar", "double_mnist"):
        show_table(paper_table_s2(d), f"*Table S2, {d}* (the paper's values, not results of ours)")
