"""Page 05 (paper Sec. 5, standard classification): the MNIST-like datasets and the patch experiment
(lrbook.data.standard), IG baselines (lrbook.attribution), the analysis (lrbook.classification) and
the figure functions, on hand-computed cases and small stores built here."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from lrbook import ResultStore, figures, make_config  # noqa: E402
from lrbook.attribution import attribution_map, baselines_for  # noqa: E402
from lrbook.classification import contrast_samples, learned_epoch, patch_gap_curve, trend_scores  # noqa: E402
from lrbook.config import ConfigError  # noqa: E402
from lrbook.data.standard import class_patterns, foreground_regions, make_mnist, make_mnist_patch, stamp  # noqa: E402


def test_contrast_samples_ranks_by_the_difference_then_the_high_share():
    high = np.array([[1, 1, 0, 1], [1, 0, 0, 1]], bool)  # shares 1, .5, 0, 1
    low = np.array([[0, 1, 0, 1], [0, 1, 1, 1]], bool)  # shares 0, 1, .5, 1
    # differences 1, -.5, -.5, 0: image 1 beats image 2 on the high-LR share
    assert contrast_samples(high, low, 4).tolist() == [0, 3, 1, 2]
    assert contrast_samples(high, low, 2).tolist() == [0, 3]


def test_patch_gap_curve_and_learned_epoch():
    trace = [{"epoch": 0, "test_ba_acc": 0.1, "test_bc_acc": 0.1}, {"epoch": 1, "test_ba_acc": 0.5, "test_bc_acc": 0.3},
             {"epoch": 2, "test_ba_acc": 0.9, "test_bc_acc": 0.5}, {"epoch": 3, "test_ba_acc": 0.9, "test_bc_acc": 0.7},
             {"epoch": 3, "patch": 0.2}]  # a point without accuracies is skipped
    epochs, gap = patch_gap_curve(trace)
    assert epochs.tolist() == [0, 1, 2, 3] and np.allclose(gap, [0, 0.2, 0.4, 0.2])
    assert learned_epoch(epochs, gap) == 1  # from epoch 1 on the gap stays >= 0.1, half the final 0.2
    assert learned_epoch(epochs, np.array([0.3, 0.0, 0.1, 0.2])) == 2  # a noisy start does not count
    assert learned_epoch(epochs, np.array([0, .25, .5, .25]), share=1.0) == 1
    assert learned_epoch(epochs, np.array([0.3, .3, .3, .2])) == 0
    assert np.isnan(learned_epoch(epochs, np.zeros(4)))


def test_class_patterns_are_distinct_fixed_and_stamped_in_the_corner():
    p = class_patterns(10, 4)
    assert p.shape == (10, 4, 4) and len({tuple(r.flatten().tolist()) for r in p}) == 10
    assert torch.equal(p, class_patterns(10, 4))  # the same for every run
    x = torch.full((3, 1, 28, 28), 0.5)
    out = stamp(x, torch.tensor([2, 0, 9]), p)
    assert torch.equal(out[1, 0, :4, :4], p[0]) and torch.equal(out[2, 0, :4, :4], p[9])
    assert (out[:, :, 4:, :] == 0.5).all() and (out[:, :, :, 4:] == 0.5).all() and (x == 0.5).all()


def test_foreground_regions_are_the_nonzero_pixels():
    x = torch.zeros(1, 1, 2, 3)
    x[0, 0, 1, 2] = 0.3
    r = foreground_regions(x)
    assert r["foreground"].sum() == 1 and r["foreground"][0, 0, 1, 2] and (r["background"] == ~r["foreground"]).all()


def test_integrated_gradients_baselines_on_a_linear_model():
    """For f(x) = w . x, IG from baseline x' is exactly (x - x') * w: a zero baseline gives zero-valued
    pixels no attribution ("black-baseline blindness"); the uniform baselines do."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    x = torch.tensor([[[[0.0, 1.0], [0.0, 0.5]]]])
    y = torch.tensor([1])
    w = model[1].weight[1].detach().reshape(1, 2, 2)
    zero = attribution_map(model, x, y, n_steps=8)
    assert torch.allclose(zero, (x[:, 0] * w).abs(), atol=1e-5) and (zero[x[:, 0] == 0] == 0).all()
    uniform = attribution_map(model, x, y, n_steps=8, baseline="uniform")
    expected = sum((x - b)[:, 0] * w for b in baselines_for(x, "uniform")) / len(baselines_for(x, "uniform"))
    assert torch.allclose(uniform, expected.abs(), atol=1e-5) and (uniform[x[:, 0] == 0] > 0).all()
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines_for(x, "blurred")


@pytest.mark.mnist
def test_mnist_patch_puts_class_patches_on_a_share_of_training_images_and_shuffles_them_at_test(mnist_root):
    data = make_mnist_patch(n_train=2000, n_test=1000, patch_fraction=0.1, seed=3, root=mnist_root, download=False)
    plain = make_mnist(n_train=2000, n_test=1000, seed=3, root=mnist_root, download=False)
    p = class_patterns(10, 4)
    corner = data.x_train[:, 0, :4, :4]
    patched = (corner == p[data.y_train]).flatten(1).all(1) & (data.x_train != plain.x_train).flatten(1).any(1)
    assert int(patched.sum()) == 200 and data.params["n_patched"] == 200
    assert torch.equal(data.x_train[~patched], plain.x_train[~patched])  # the others are untouched
    assert torch.equal(data.x_test[:, 0, :4, :4], p[data.b_test])  # every test image, the patch of class b
    assert 0.05 < (data.b_test == data.y_test).float().mean() < 0.16  # b drawn independently of y
    assert (data.b_train == data.y_train).all() and data.has_bias and data.attribution_baseline == "uniform"
    assert not plain.has_bias and set(plain.regions(plain.x_test[:2])) == {"foreground", "background"}
    with pytest.raises(ConfigError, match="patch_fraction"):
        make_mnist_patch(n_train=10, n_test=10, patch_fraction=1.5, root=mnist_root, download=False)


@pytest.mark.mnist
def test_an_mnist_run_records_no_bias_metrics_and_keeps_maps_and_predictions(tmp_path, mnist_root):
    from lrbook.experiment import run_experiment

    store = ResultStore(tmp_path / "store")
    cfg = make_config("mnist", "fcn", lr=0.1, scale="smoke", max_epochs=2)
    rec = run_experiment(cfg, store, device="cpu", data_root=mnist_root)
    m = rec["metrics"]
    assert not {"test_ba_acc", "test_bc_acc", "bsi", "max_bc_loss_ratio"} & set(m)
    assert 0 < m["attr_background"] < 1 and abs(m["attr_background"] + m["attr_foreground"] - 1) < 1e-5
    pred = store.get_artefact(cfg.run_id, "test_predictions")
    assert len(pred["pred"]) == 500 and np.isclose((pred["pred"] == pred["y"]).mean(), m["test_acc"])
    maps = store.get_artefact(cfg.run_id, "attribution_maps")
    assert maps["maps"].shape == (8, 28, 28) and maps["x"].dtype == np.uint8 and maps["x"].shape == (8, 1, 28, 28)
    bands = [m[f"test_acc_band{b}"] for b in range(8)]
    assert all(0 <= a <= 1 for a in bands) and "test_acc_band8" not in m


def _put(store, dataset, lr, seed, correct, trace=(), **metrics):
    """A record with `test_predictions` (1 where `correct`) and `attribution_maps` artefacts."""
    cfg = make_config(dataset, "fcn", lr=lr, seed=seed, scale="smoke")
    n = len(correct)
    y = np.arange(n) % 10
    store.put_artefact(cfg.run_id, "test_predictions", pred=np.where(correct, y, (y + 1) % 10), y=y)
    store.put_artefact(cfg.run_id, "attribution_maps", maps=np.ones((n, 4, 4), np.float16), y=y, b=y,
                       test_index=np.arange(n), x=np.zeros((n, 1, 4, 4), np.uint8))
    store.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": "converged", "epochs": 3, "steps": 30,
               "metrics": {"test_acc": float(np.mean(correct)), "train_acc": 1.0, **metrics},
               "attribution_trace": list(trace), "curves": {}})


def test_contrast_maps_and_patch_dynamics_figures(tmp_path):
    store = ResultStore(tmp_path / "store")
    for seed in (0, 1):
        _put(store, "mnist", 0.02, seed, [1, 1, 0, 0, 1])
        _put(store, "mnist", 0.4, seed, [1, 0, 1, seed, 1])  # image 2 always, image 3 half the time
    runs = store.to_frame()
    fig = figures.contrast_maps(store, runs, ("mnist", "fcn"), k=3)
    assert fig.data["chosen"].tolist() == [2, 3, 0]
    assert fig.data["rates"][0.4].tolist() == [1.0, 0.5, 1.0] and fig.data["rates"][0.02].tolist() == [0.0, 0.0, 1.0]
    assert "LR 0.4 runs (2 seeds)" in fig.caption and "speckled" in fig.caption and "first 5 test images" in fig.caption
    assert len(fig.plot(fig.data).axes) == 9

    trace = [{"epoch": e, "test_ba_acc": 0.5 + 0.1 * e, "test_bc_acc": 0.5} for e in range(4)]
    for lr in (0.02, 0.4):
        _put(store, "mnist_patch", lr, 0, [1, 0], trace=trace, test_ba_acc=0.8, test_bc_acc=0.5)
    fig = figures.patch_dynamics(store, store.to_frame(), ("mnist_patch", "fcn"))
    table = fig.tables["Per LR, mean and sd over seeds"]
    assert table["learned at epoch"].tolist() == [2.0, 2.0]  # gaps 0, .1, .2, .3: from epoch 2 on >= .15
    assert table["learned at (share of training)"].tolist() == [0.67, 0.67]  # 2 of the records' 3 epochs
    assert np.allclose(table["largest BA − BC gap (points)"], 30)
    assert fig.plot(fig.data) is not None
    assert "no stored maps" in figures.contrast_maps(store, store.to_frame(), ("fashion_mnist", "fcn")).notes[0]


def test_trend_scores_mark_the_claimed_direction(tmp_path):
    import pandas as pd

    rows = [dict(dataset="mnist", model="fcn", scale="cpu", lr=lr, seed=s, status="converged", train_acc=1.0,
                 test_acc=0.9 + lr / 10 + s / 1000, attr_entropy=5 - lr - s / 1000, run_id=f"{lr}-{s}")
            for lr in (0.02, 0.05, 0.1, 0.2, 0.4) for s in (0, 1, 2)]
    table = trend_scores(pd.DataFrame(rows), [("mnist", "fcn")], ("test_acc", "attr_entropy"))
    assert table["Unbiased test acc. (↑)"].iloc[0].startswith("✓ +0.98")
    assert table["Attribution entropy (↓)"].iloc[0].startswith("✓ -0.98")  # falls, as the paper claims
    assert table["runs used"].iloc[0] == 15
    one_seed = trend_scores(pd.DataFrame([r for r in rows if r["seed"] == 0]), [("mnist", "fcn")], ("test_acc",))
    assert one_seed["Unbiased test acc. (↑)"].iloc[0] == "? +1.00 (no interval: one seed per LR)"


def test_runs_keep_many_small_maps_and_few_large_ones():
    from lrbook.experiment import maps_kept

    assert maps_kept(make_config("mnist", "fcn", scale="smoke"), torch.zeros(1, 1, 28, 28)) == 64
    assert maps_kept(make_config("imagenet", "resnet18", scale="smoke"), torch.zeros(1, 3, 224, 224)) == 8
    assert maps_kept(make_config("double_mnist", "fcn", scale="smoke"), torch.zeros(1, 1, 28, 56)) == 16


def test_frequency_bands_partition_the_spectrum_and_isolate_a_cosine():
    from lrbook.classification import band_mask, keep_band

    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(sum(keep_band(x, b) for b in range(8)), x, atol=1e-5)
    masks = torch.stack([band_mask(28, 28, b) for b in range(8)])
    assert (masks.sum(0) == 1).all() and masks[0, 0, 0]  # each frequency in one band; the constant in band 0
    # cos(2 pi 7 col / 28): radius (7 / 28) / sqrt(0.5) = 0.354, so band floor(8 * 0.354) = 2
    cosine = torch.cos(2 * torch.pi * 7 * torch.arange(28) / 28).repeat(28, 1)[None, None]
    assert torch.allclose(keep_band(cosine, 2), cosine, atol=1e-5)
    assert all(keep_band(cosine, b).abs().max() < 1e-5 for b in range(8) if b != 2)
    with pytest.raises(ValueError, match="band must be in 0..7"):
        band_mask(28, 28, 8)


def test_band_accuracies_of_a_model_that_reads_mean_brightness():
    """Class 1 iff the pixel sum is positive: on constant images only band 0 (the constant term)
    keeps the evidence; every other band leaves zeros, a tie that argmax gives to class 0."""
    from lrbook.classification import band_accuracies

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.zeros(16), torch.ones(16)]))
        model[1].bias.zero_()
    x = torch.ones(4, 1, 4, 4)
    assert band_accuracies(model, x, torch.ones(4, dtype=torch.long), n_bands=4) == [1.0, 0.0, 0.0, 0.0]


def test_frequency_bands_figure_averages_seeds_and_scores_each_band(tmp_path):
    store = ResultStore(tmp_path / "store")
    for lr in (0.05, 0.4):
        for seed in (0, 1):
            bands = {f"test_acc_band{b}": (0.5 if b == 0 else 0.1) + (lr if b == 1 else 0) + 0.01 * seed
                     for b in range(8)}
            _put(store, "mnist", lr, seed, np.ones(4, bool), **bands)
    fig = figures.frequency_bands(store.to_frame(), ("mnist", "fcn"))
    assert fig.data.index.tolist() == [0.05, 0.4]
    assert np.allclose(fig.data.loc[0.4, "test_acc_band1"], 0.505)  # 0.1 + 0.4 + mean seed offset 0.005
    table = fig.tables["Per band"].set_index("band")
    assert table.loc[1, "accuracy at the lowest LR"] == "15.5%" and table.loc[1, "at the highest LR"] == "50.5%"
    assert table.loc[1, "Spearman with LR [95%]"].startswith("+0.89")  # 2 LRs x 2 seeds, ranks tie within LR
    fig.plot(fig.data)
    empty = figures.frequency_bands(store.to_frame(), ("fashion_mnist", "fcn"))
    assert empty.plot is None and "no run has band accuracies" in empty.notes[0]
