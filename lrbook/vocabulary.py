"""The project's names, in one place: datasets (by family), models, scales, display names, the
paper's cells (the rows of Table S1) and LR grids. Configuration, the dataset registry, the pages
and the status page all read them from here; adding a dataset starts with a line below."""
from __future__ import annotations

# Dataset name -> family. The family names the module of `lrbook.data` that builds it.
DATASET_FAMILIES = {
    "parity": "synthetic", "moon_star": "synthetic",  # paper Sec. 4.1
    "colored_mnist": "mnist", "double_mnist": "mnist",  # Sec. 4.1, semi-synthetic
    "mnist_cifar": "cifar", "corrupted_cifar10": "cifar",  # Sec. 4.1, semi-synthetic, need CIFAR-10
    "mnist": "standard", "fashion_mnist": "standard",  # standard classification with an exact foreground
    "cifar10": "cifar", "cifar100": "cifar", "imagenet": "imagenet",  # Sec. 5, standard classification
    "mnist_patch": "standard", "fashion_mnist_patch": "standard",  # beyond the paper: Li et al. 2019's patch
}
DATASETS = tuple(DATASET_FAMILIES)
SYNTHETIC = ("parity", "moon_star")  # page 01
SEMI_SYNTHETIC = ("colored_mnist", "double_mnist", "mnist_cifar", "corrupted_cifar10")  # page 02
# Page 05 (Sec. 5, "standard classification"): the paper's CIFAR-10, CIFAR-100 and ImageNet-1k, and
# MNIST and Fashion-MNIST, whose background (pixels at 0) is known exactly.
STANDARD = ("imagenet", "cifar10", "cifar100", "mnist", "fashion_mnist")
# Beyond the paper (after Li et al. 2019): a class-dependent patch on a fraction of the training
# images, shuffled across classes at test time; the bias label of a test image is its patch's class.
PATCHED = ("mnist_patch", "fashion_mnist_patch")
NUM_CLASSES = {**{d: 2 for d in SYNTHETIC}, **{d: 10 for d in SEMI_SYNTHETIC},
               "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100, "imagenet": 1000,
               **{d: 10 for d in PATCHED}}  # chance = 1 / this (Sec. 4.1)
MNIST_BASED = ("colored_mnist", "double_mnist", "mnist_cifar", "mnist", "mnist_patch")  # read MNIST
FASHION_MNIST_BASED = ("fashion_mnist", "fashion_mnist_patch")  # read Fashion-MNIST
CIFAR_BASED = ("mnist_cifar", "corrupted_cifar10", "cifar10")  # read CIFAR-10
CIFAR100_BASED = ("cifar100",)
STREAMED = ("imagenet",)  # too large for device memory: DataLoader streaming, torchrun DDP (`lrbook.distributed`)
EXACT_FOREGROUND = ("mnist", "fashion_mnist") + PATCHED  # background = pixels at 0
SEGMENTED_BACKGROUND = ("cifar10", "cifar100", "imagenet")  # background from DeepLabV3 (Sec. 5)

MODELS = ("fcn", "cnn", "resnet18", "resnet50", "wide_resnet101_2")  # Sec. 4.2: the five architectures
SCALES = ("smoke", "cpu", "paper")

DATASET_NAMES = {"parity": "Parity", "moon_star": "Moon-Star", "colored_mnist": "Colored MNIST",
                 "double_mnist": "Double MNIST", "mnist_cifar": "MNIST-CIFAR", "corrupted_cifar10": "Cor. CIFAR-10",
                 "celeba": "CelebA", "waterbirds": "Waterbirds",
                 "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "imagenet": "ImageNet-1k", "mnist_patch": "MNIST + patch", "fashion_mnist_patch": "Fashion-MNIST + patch"}
MODEL_NAMES = {"fcn": "FCN", "cnn": "CNN", "resnet18": "ResNet18", "resnet50": "ResNet50",
               "wide_resnet101_2": "Wide ResNet101-2", "swin_t": "Swin Transformer"}
METRIC_LABELS = {"test_acc": "Unbiased test acc.", "prunability": "Prunability",
                 "act_compressibility": "Act. compressibility", "csi": "Avg. CSI",
                 "class_separation": "Class separation", "test_worst_group_acc": "Worst-group acc.",
                 "act_sparsity": "Act. sparsity", "bsi": "Avg. BSI", "test_bc_acc": "BC test acc.",
                 "test_ba_acc": "BA test acc.", "max_bc_loss_ratio": "Max BC loss ratio",
                 "param_compressibility": "Param. compressibility", "prunability_magnitude": "Prunability (magnitude)",
                 "act_pq_index": "Act. PQ-index", "prunability_bn_batch": "Prunability (BN batch stats)",
                 "csi_minus_bsi": "CSI − BSI",
                 "prunability_global": "Prunability (global ranking)",
                 "prunability_global_chance_corrected": "Prunability (global, chance-corrected)",
                 "prunability_global_to_half": "Prunability (global, grid to 50%)",
                 "prunability_chance_corrected": "Prunability (chance-corrected)",
                 "prunability_to_half": "Prunability (grid to 50%)",
                 "prunability_bn_batch_chance_corrected": "Prunability (BN batch stats, chance-corrected)",
                 "prunability_bn_batch_to_half": "Prunability (BN batch stats, grid to 50%)",
                 "attr_entropy": "Attribution entropy", "attr_background": "Background attribution share",
                 "attr_patch": "Attribution share in the patch", "test_ba_minus_bc": "Patch reliance (BA − BC acc.)",
                 "attr_core": "Core attribution share", "attr_spurious": "Spurious attribution share"}
# Every reading of prunability a run records (`metrics.prunability_candidates`); the Definitions page
# argues for `prunability_global`, which the scorecard and the LR-effect panels use in every cell
# whose runs all have it (`selection.prunability_reading`), and `prunability` elsewhere.
PRUNABILITY_READINGS = ("prunability", "prunability_global", "prunability_chance_corrected",
                        "prunability_global_chance_corrected", "prunability_to_half", "prunability_global_to_half",
                        "prunability_magnitude", "prunability_bn_batch", "prunability_bn_batch_chance_corrected",
                        "prunability_bn_batch_to_half")

# The paper's (dataset, model) cells: the rows of Table S1 (supplement D.3).
SYNTHETIC_CELLS = tuple((d, "fcn") for d in SYNTHETIC)
SEMI_SYNTHETIC_CELLS = tuple((d, m) for d in SEMI_SYNTHETIC for m in MODELS)
PAPER_CELLS = SYNTHETIC_CELLS + SEMI_SYNTHETIC_CELLS

# LR grids. The synthetic page trains these five (they span Table S1's 0.01 to 0.75 for both
# tasks); the semi-synthetic cells take five LRs spanning their Table S1 range (`paper.paper_lr_grid`).
SYNTHETIC_LRS = (0.01, 0.03, 0.1, 0.3, 0.75)
# Page 05's FCN on MNIST / Fashion-MNIST (and their patched versions): five LRs inside the FCN's Table S1
# range on the MNIST-based sets (0.001 to 0.5), from 0.05 up: on 2 CPU cores an FCN epoch takes 3 to 6 s
# and the epochs to 100% training accuracy grow as 1 / LR (about 90 at LR 0.05, 230 at LR 0.02).
STANDARD_LRS = (0.05, 0.1, 0.2, 0.3, 0.4)
# Fashion-MNIST's FCN at `cpu` scale (measured 2026-11-30, 2-core CPU, seed 0): at LR 0.35 and 0.4 it stalls
# (68% and 47% training accuracy at the 300-epoch cap), at LR 0.2 to 0.3 it needs 117 to 135 epochs; its grid
# ends at 0.3, where it still trains to 100%.
PAGE05_LRS = {"fashion_mnist": (0.1, 0.15, 0.2, 0.25, 0.3), "fashion_mnist_patch": (0.1, 0.15, 0.2, 0.25, 0.3)}
# The model page 05 trains when none is named: the paper's ResNet18 for its sets (Fig. 8, 10; it names no
# model for ImageNet), the FCN for the MNIST-like sets, which run on a CPU.
PAGE05_MODEL = {"imagenet": "resnet18", "cifar10": "resnet18", "cifar100": "resnet18", "mnist": "fcn",
                "fashion_mnist": "fcn", "mnist_patch": "fcn", "fashion_mnist_patch": "fcn"}
STANDARD_CELLS = tuple((d, m) for d in STANDARD + PATCHED for m in MODELS)
# Fig. 10, page 05: how attributions spread (entropy) and how much falls on the background, per LR.
ATTRIBUTION_METRICS = ("attr_entropy", "attr_background")
PATCH_METRICS = ("test_acc", "test_ba_minus_bc", "attr_patch", "bsi")  # the patch experiment's panels

# Sec. 5 (Fig. 6, 9, 20; Table S2): LR and the interventions it is compared with, named as in Table S2,
# and what each one's axis shows (`lrbook.interventions` maps them to run configs).
INTERVENTIONS = {"lr": "Learning Rate", "high_lr_l2": "High LR + L2 Reg.", "batch_size": "Batch Size",
                 "momentum": "Momentum", "l1": "L1 Regularization", "l2": "L2 Regularization",
                 "focal_loss": "(Focal Loss)", "asam": "(ASAM)"}
HYPERPARAMETER_LABELS = {"lr": "learning rate", "high_lr_l2": "L2 coefficient (weight decay), high LR",
                         "batch_size": "1 / batch size", "momentum": "momentum", "l1": "L1 coefficient",
                         "l2": "L2 coefficient (weight decay)", "focal_loss": "focal loss gamma", "asam": "ASAM rho"}
INTERVENTION_METRICS = ("test_acc", "prunability", "csi")  # Table S2's variables
INTERVENTION_CELL = ("colored_mnist", "resnet18")  # Fig. 6; Fig. 20 shows the other cells with runs

# Figures that show chosen cells rather than every cell.
MECHANISM_CELLS = (("parity", "fcn"),) + tuple((d, m) for d in ("colored_mnist", "double_mnist")
                                             for m in ("fcn", "cnn", "resnet18"))  # Fig. 12, 13 on the status page
FIG13_CELLS = (("colored_mnist", "resnet18"), ("colored_mnist", "fcn"), ("parity", "fcn"))  # Sec. 6
FIG8_DATASETS = ("double_mnist", "mnist_cifar")  # core and spurious features in separate regions
BA_BC_DATASETS = ("colored_mnist", "double_mnist")  # the supplement reports the BA/BC loss ratio for these

# Table S1 column prefix -> our metric column, and the factor that brings ours to the paper's unit.
S1_METRICS = {"test_acc": ("test_acc", 100.0), "prunability": ("prunability", 1.0),
              "act_comp": ("act_compressibility", 1.0), "avg_csi": ("csi", 1.0),
              "class_sep": ("class_separation", 1.0)}
LR_EFFECT_METRICS = ("test_acc", "prunability", "act_compressibility")  # Fig. 3, 4, 15, 16
REPRESENTATION_METRICS = ("csi", "class_separation")  # Fig. 5
# Beyond the paper: CSI alone is confounded when the bias-selectivity index rises with it, so Fig. 5
# and the scorecard show BSI and CSI - BSI beside it (a shift from spurious to core features raises
# CSI - BSI). `store.records_to_frame` derives `csi_minus_bsi`.
SELECTIVITY_CHECKS = ("bsi", "csi_minus_bsi")
# Fig. 26 (supplement C): "alternative choices to characterize parameter and representation
# compressibility, such as [kappa-compressibility], sparsity, and the recently proposed PQ-Index
# produce qualitatively identical results" (Colored MNIST / ResNet18 in the paper).
COMPRESSIBILITY_MEASURES = ("act_compressibility", "act_sparsity", "act_pq_index", "param_compressibility")
# Fig. 27 (supplement D): where core and spurious features sit in separate input regions
# (`FIG8_DATASETS`), the paper checks CSI against the share of input attribution on the core region.
CSI_ATTRIBUTION_METRICS = ("csi", "csi_minus_bsi", "attr_core")


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def model_name(model: str) -> str:
    return MODEL_NAMES.get(model, model)


def cell_title(dataset: str, model: str) -> str:
    """'Colored MNIST / ResNet18'."""
    return f"{dataset_name(dataset)} / {model_name(model)}"


def cell_order(cell: tuple[str, str]) -> tuple[int, int]:
    """Sort key: the order of `DATASETS` then `MODELS` (unknown names last)."""
    d, m = cell
    return (DATASETS.index(d) if d in DATASETS else len(DATASETS), MODELS.index(m) if m in MODELS else len(MODELS))
