"""Attribution shares on Double MNIST's halves and the stored attribution maps (Fig. 8 panels)."""
import numpy as np
import pytest

from lrbook import make_config
from lrbook.experiment import run_experiment


@pytest.mark.mnist
def test_double_mnist_run_stores_region_shares_and_maps(tmp_store, mnist_root):
    cfg = make_config("double_mnist", "fcn", lr=0.1, scale="smoke", max_epochs=2,
                      dataset_params=dict(n_train=300, n_test=100))
    record = run_experiment(cfg, store=tmp_store, device="cpu", data_root=mnist_root)
    m = record["metrics"]
    assert m["attr_core"] + m["attr_spurious"] == pytest.approx(1.0, abs=1e-5)
    assert 0 < m["attr_spurious"] < 1 and m["attr_entropy"] > 0
    assert record["artefacts"] == ["attribution_maps"]
    arrays = tmp_store.get_artefact(cfg.run_id, "attribution_maps")
    maps = arrays["maps"].astype(np.float32)
    assert maps.shape == (8, 28, 56) and (maps >= 0).all()
    # The stored maps are the ones the shares were computed from: recompute the spurious share.
    share = (maps[:, :, 28:].sum((1, 2)) / maps.sum((1, 2))).mean()
    assert share == pytest.approx(m["attr_spurious"], abs=5e-3)
    assert arrays["y"].shape == arrays["b"].shape == (8,)  # labels are stored beside the maps
    assert list(tmp_store.artefact_dir(cfg.run_id).glob(".*")) == []  # no temporary files left


def test_put_artefact_round_trip(tmp_store):
    assert not tmp_store.has_artefact("abc", "maps")
    path = tmp_store.put_artefact("abc", "maps", maps=np.arange(6, dtype=np.float16).reshape(2, 3))
    assert path.name == "maps.npz"
    assert tmp_store.has_artefact("abc", "maps") and not tmp_store.has_artefact("abc", "other")
    assert tmp_store.get_artefact("abc", "maps")["maps"].tolist() == [[0, 1, 2], [3, 4, 5]]
