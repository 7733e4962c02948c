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
# # Standard classification: hidden spurious features
#
# **Paper:** Sec. 5 ("Does LR have similar effects on generalization in standard classification
# tasks?"), Fig. 8 and 10 (CIFAR-10, CIFAR-100), Fig. 11 (ImageNet-1k), supplement E (Fig. 35, 36).
# **Claim:** in CIFAR-10, CIFAR-100 and ImageNet-1k, as in the spurious-correlation datasets, a
# larger LR raises test accuracy, compressibility and core-feature use; its models attribute less
# to backgrounds and textures (lower attribution entropy, lower background attribution share), so
# "high LRs might be obtaining increased generalization through robustness to hidden SCs".
#
# **What this page shows.** The paper's CIFAR and ImageNet runs need data and GPUs the machine that
# builds this book does not have; their code is here and tested (the end of the page says how to run
# them), and the page shows them as soon as the results store holds them. Until then it shows the
# same analyses on two standard datasets that are here, **MNIST** and **Fashion-MNIST**, whose
# background is known exactly (pixels at 0), and a test of the claim itself where we control the
# spurious feature, after Li et al. (2019): a small class-dependent **patch** on 10% of the training
# images, shuffled across classes at test time.
#
# * Attribution: Integrated Gradients on the true-class logit. On MNIST-like images IG from a zero
#   baseline gives every zero pixel exactly zero attribution, so the background share would be 0 for
#   any model; there we average IG over four uniform-noise baselines (Sturmfels et al. 2020). CIFAR
#   and ImageNet use the paper's zero baseline and DeepLabV3 backgrounds (VOC class 0; images with no
#   foreground are dropped and counted).
# * ImageNet-1k (Sec. 4.2): batch 16, SGD at a constant LR "until 100% accuracy". The paper does not
#   name the ImageNet model or an epoch cap: we use ResNet18 (the model of its Fig. 8 and 10) and stop
#   at 100% training accuracy or after 90 epochs (torchvision's reference recipe length), whichever
#   comes first.
#   Images are resized to 256 and centre-cropped to 224, without augmentation, like every other set here.
#
# Every figure names its scale, runs and seeds; definitions are on the [Definitions](../definitions.md)
# page.

# %% tags=["parameters"]
dataset = "imagenet"  # what `lr` / `train` trains: imagenet, cifar10, cifar100, mnist, fashion_mnist, mnist_patch, fashion_mnist_patch
model = None  # None: ResNet18 for ImageNet and CIFAR, the FCN for the MNIST-like sets; or fcn, cnn, resnet18, ...
lr = None  # train this LR's missing runs (e.g. -p lr 0.1), then render
lrs = None  # or a list of LRs
train = False  # True: train the missing runs of the dataset's LR grid
seeds = [0, 1, 2]
scale = None  # render: each cell at its most faithful complete scale; train: "paper" on a GPU, else "cpu"
device = "auto"
workers = 1
store_dir = None
data_root = None  # folder with MNIST/, FashionMNIST/, cifar-10-batches-py/, cifar-100-python/, imagenet/; None: $LRBOOK_DATA or ./data

# %% tags=["hide-input"]
# %matplotlib inline
import torch
from IPython.display import Markdown, display

from lrbook import ResultStore
from lrbook.book import lrs_to_train, show, show_table, train_missing
from lrbook.classification import trend_scores
from lrbook.config import check_names
from lrbook.data import require_data
from lrbook.figures import contrast_maps, frequency_bands, lr_effect_panels, missing_standard_cells, patch_dynamics
from lrbook.selection import select_runs, stored_cells
from lrbook.vocabulary import (ATTRIBUTION_METRICS, LR_EFFECT_METRICS, PAGE05_LRS, PAGE05_MODEL, PATCH_METRICS,
                               PATCHED, REPRESENTATION_METRICS, STANDARD, STANDARD_CELLS, STANDARD_LRS)

check_names(dataset=dataset, model=model, scale=scale, datasets=STANDARD + PATCHED)
store = ResultStore(store_dir)

# %% [markdown]
# ## Training what is missing
# Nothing is trained unless asked. `-p lr 0.1` trains that LR's missing seeds for `dataset` (ImageNet
# by default) and `model`; `-p train True` trains the LRs the cell already has or, if none, five LRs
# (0.05 to 0.4; Fashion-MNIST 0.1 to 0.3: its FCN stalls below 70% training accuracy at LR 0.35 and
# 0.4). ImageNet streams from disk in one process here; across GPUs and nodes, launch
# `torchrun ... -m lrbook.distributed` (end of the page).

# %% tags=["hide-input"]
if lr is not None or lrs or train:
    cell = (dataset, model or PAGE05_MODEL[dataset])
    train_scale = scale or ("paper" if torch.cuda.is_available() else "cpu")
    require_data([dataset], data_root)  # once, before any run starts
    print(f"training at scale {train_scale!r}:",
          train_missing(store, [cell], {cell: lrs_to_train(store, cell, train_scale, lr, lrs,
                                                          default=PAGE05_LRS.get(dataset, STANDARD_LRS))},
                        seeds, train_scale, workers=workers, device=device, data_root=data_root))
else:
    print("Rendering from the results store (nothing to train).")
runs = select_runs(store.to_frame(), STANDARD_CELLS, scale=scale)
standard = [c for c in stored_cells(runs) if c[0] in STANDARD]
patched = [c for c in stored_cells(runs) if c[0] in PATCHED]
show_table(missing_standard_cells(runs), "**The paper's datasets without stored runs** (nothing of ours to show yet):")

# %% [markdown]
# ## LR effects on accuracy, compressibility and representations (Fig. 11)
# One panel per cell with stored runs: test accuracy, prunability, activation compressibility, average
# class selectivity (CSI) and class separation against LR, each normalised to [0, 1] as in the paper
# (line: mean over seeds; band: one sd). The paper's Fig. 11 plots these for ImageNet-1k. Diverged and
# under-trained runs, and LRs beyond the paper's range rule, are left out and counted. The accuracy is
# labelled "unbiased" as on the other pages; here it is the accuracy on the standard test split.

# %% tags=["hide-input"]
show(lr_effect_panels(runs, standard, LR_EFFECT_METRICS + REPRESENTATION_METRICS, "Fig. 11",
                      "test accuracy, prunability, activation compressibility, avg. CSI and class separation against LR"))

# %% [markdown]
# ## Attribution entropy and background share (Fig. 10)
# The entropy of each normalised attribution map (a map spread over background and texture has a high
# entropy) and the share of attribution mass on the background, mean over the first 200 test images,
# against LR. The paper finds both fall as LR grows.

# %% tags=["hide-input"]
show(lr_effect_panels(runs, standard, ATTRIBUTION_METRICS, "Fig. 10",
                      "attribution entropy and background attribution share against LR (the paper: both fall)"))

# %% [markdown]
# ## Where the high-LR models look (Fig. 8, 35, 36)
# The test images the high-LR models get right more often than the low-LR ones, and where each looks.
# The paper keeps the CIFAR test images predicted correctly by a given share of ten high-LR and of ten
# low-LR ResNet18s; those shares are lost in our copy of the text, so we rank by the difference.

# %% tags=["hide-input"]
for cell in standard + patched:
    show(contrast_maps(store, runs, cell))

# %% [markdown]
# ## A spurious feature we control: the patch experiment (beyond the paper)
# A 4×4 binary pattern that names the class sits in the top-left corner of 10% of the training images
# (easy to fit, and useless at test time); every test image carries the pattern of a random class.
# If large LRs resist rare spurious features, then as LR grows the test accuracy should rise, and the
# gap between test images whose patch agrees with the label (BA) and those whose patch disagrees (BC),
# the attribution share inside the patch, and the selectivity of the penultimate units for the patch's
# class (BSI) should fall.

# %% tags=["hide-input"]
show(lr_effect_panels(runs, patched, PATCH_METRICS, "Patch experiment",
                      "test accuracy, BA − BC accuracy, attribution share in the patch and BSI (patch class) against LR"))
for cell in patched:
    show(patch_dynamics(store, runs, cell))

# %% [markdown]
# ## Which spatial frequencies the networks read (beyond the paper)
# After Sadrtdinov et al. (2024), who compare models trained with different LRs by the frequency bands
# their features come from: each test image is reduced to one ring of its 2-D Fourier spectrum (8
# rings of equal width in frequency radius, band 0 holding the constant term), and the trained
# network classifies the result. A network whose accuracy survives in a band reads features there.
# The paper makes no claim about this, so nothing here is scored against it; the table gives, per
# band, the Spearman correlation of LR with the band's accuracy. Exact definition:
# `lrbook.classification.keep_band`.

# %% tags=["hide-input"]
for cell in standard:
    show(frequency_bands(runs, cell))

# %% [markdown]
# ## Does each effect go the paper's way?
# One row per cell: the Spearman correlation of LR with each variable over the runs the figures use,
# with its 95% seed-bootstrap interval, marked ✓ when the interval lies on the side the paper claims
# (↑: rises with LR; ↓: falls), ✗ when it lies on the other side, ? when it includes 0.

# %% tags=["hide-input"]
if standard:
    show_table(trend_scores(runs, standard, LR_EFFECT_METRICS + REPRESENTATION_METRICS + ATTRIBUTION_METRICS),
               "**Standard classification**")
if patched:
    show_table(trend_scores(runs, patched, PATCH_METRICS), "**The patch experiment**")

# %% [markdown]
# ## Running the paper's cells
# CIFAR-10 and CIFAR-100 download through torchvision (or are read from `data_root` / `$LRBOOK_DATA`);
# the background share needs DeepLabV3's pretrained weights in torch's hub cache (the error says how to
# get them). ImageNet-1k is read from `<data_root>/imagenet/` (torchvision's `ImageNet` layout, or
# `train/` and `val/` class folders); nothing is downloaded.
#
# ```bash
# papermill notebooks/05_imagenet.ipynb -p lr 0.1                       # ImageNet, one process
# papermill notebooks/05_imagenet.ipynb out.ipynb -p dataset cifar10 -p train True -p device cuda
# torchrun --nproc_per_node=8 -m lrbook.distributed --dataset imagenet --model resnet18 --lr 0.1 --seed 0 --scale paper
# ```
# Across nodes, run the same command on every node with `--nnodes N --rdzv-id ID --rdzv-backend c10d
# --rdzv-endpoint HOST:29400` (HOST: an address of the first node); the global batch stays 16, split
# evenly over the processes, and each run's record says how many processes trained it.
