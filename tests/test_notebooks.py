"""Notebooks: jupytext pairs in sync and free of outputs (nbdev-style), and each section notebook
runs under papermill at smoke scale into a temporary store."""
import json
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))


def test_every_notebook_has_a_pair():
    assert SOURCES, "no notebooks/*.py found"
    for src in SOURCES:
        assert src.with_suffix(".ipynb").is_file(), f"{src.name} has no paired .ipynb: run `jupytext --sync {src}`"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_pair_in_sync_and_clean(src):
    ipynb = src.with_suffix(".ipynb")
    from_py = jupytext.read(src)
    from_nb = jupytext.read(ipynb)
    py_cells = [(c.cell_type, c.source.strip()) for c in from_py.cells]
    nb_cells = [(c.cell_type, c.source.strip()) for c in from_nb.cells]
    assert py_cells == nb_cells, f"{src.name} and {ipynb.name} differ: run `jupytext --sync {src}`"
    raw = json.loads(ipynb.read_text())
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{ipynb.name} carries outputs: clear them (the book renders from the store)"
            assert cell.get("execution_count") is None, f"{ipynb.name} carries execution counts"
    tags = [c.get("metadata", {}).get("tags", []) for c in raw["cells"]]
    assert any("parameters" in t for t in tags), f"{ipynb.name} has no papermill 'parameters' cell"


@pytest.mark.slow
def test_synthetic_notebook_trains_missing_runs_then_renders(tmp_path):
    import papermill as pm

    from lrbook import ResultStore

    store_dir = tmp_path / "store"
    params = dict(dataset="parity", lr=0.5, seeds=[0, 1], scale="smoke", device="cpu", store_dir=str(store_dir))
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "01_synthetic.ipynb"), str(out), parameters=params,
                        cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    store = ResultStore(store_dir)
    df = store.to_frame()
    assert len(df) == 2 and set(df.seed) == {0, 1} and set(df.lr) == {0.5} and set(df.scale) == {"smoke"}
    text = out.read_text()
    assert "2 trained" in text
    assert "Scale `smoke`: 2 runs" in text  # the page says what it shows
    assert "image/png" in text  # the figure was drawn

    # Running again trains nothing: the store already holds both runs.
    mtimes = {p: p.stat().st_mtime_ns for p in store.runs.glob("*.json")}
    pm.execute_notebook(str(ROOT / "notebooks" / "01_synthetic.ipynb"), str(out), parameters=params,
                        cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    assert "0 trained, 2 already stored" in out.read_text()
    assert mtimes == {p: p.stat().st_mtime_ns for p in store.runs.glob("*.json")}


@pytest.mark.slow
def test_synthetic_notebook_without_runs_shows_paper_reference(tmp_path):
    import papermill as pm

    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "01_synthetic.ipynb"), str(out),
                        parameters=dict(store_dir=str(tmp_path / "empty"), scale="smoke"),
                        cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    text = out.read_text()
    assert "No stored runs for Parity / FCN" in text and "No stored runs for Moon-Star / FCN" in text
    assert "55.31" in text  # Table S1's parity accuracy minimum, shown as the paper's reference


@pytest.mark.slow
@pytest.mark.mnist
def test_semisynthetic_notebook_trains_a_cell_then_renders_its_figures(tmp_path, mnist_root):
    import papermill as pm

    from lrbook import ResultStore

    store_dir = tmp_path / "store"
    out = tmp_path / "out.ipynb"
    nb = str(ROOT / "notebooks" / "02_semisynthetic.ipynb")
    pm.execute_notebook(nb, str(out), cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3",
                        parameters=dict(dataset="double_mnist", model="fcn", lrs=[0.05, 0.3, 0.5], seeds=[0],
                                        scale="smoke", device="cpu", store_dir=str(store_dir),
                                        data_root=str(mnist_root)))
    df = ResultStore(store_dir).to_frame()
    assert sorted(df.lr) == [0.05, 0.3, 0.5] and set(df.dataset) == {"double_mnist"}
    # at smoke scale (30 epochs at most) LR 0.05 stops at the cap near 90% training accuracy
    assert df.set_index("lr").status.to_dict() == {0.05: "max_epochs", 0.3: "converged", 0.5: "converged"}
    text = out.read_text()
    assert "3 trained" in text and "Scale `smoke`: 3 runs" in text
    assert "under-trained, so left out of the comparison" in text
    assert "share of attribution on the spurious region" in text
    assert text.count("image/png") == 6  # Fig. 4, 26, 5, 21/22, the attribution maps and Fig. 27
    assert "**Fig. 26:**" in text
    assert "**Fig. 27:**" in text and "follows the core share" in text
    assert "with 12 Axes" in text  # the maps: 2 LRs (0.3 and 0.5, not the under-trained 0.05) x 6 inputs
    assert "No cell has `paper`-scale runs, so no level is set against Table S1" in text

    # Rendering every cell from the same store: the CIFAR cells say why they are empty.
    pm.execute_notebook(nb, str(out), cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3",
                        parameters=dict(store_dir=str(store_dir), scale="smoke"))
    text = out.read_text()
    assert "CIFAR-10 not available on the build machine" in text and "MNIST-CIFAR has no stored runs" in text
    assert "35.2 to 35.4" in text  # Table S1: MNIST-CIFAR / FCN accuracy range, as the paper's reference


@pytest.mark.slow
@pytest.mark.mnist
def test_hyperparameters_notebook_trains_one_intervention_then_renders(tmp_path, mnist_root):
    import papermill as pm

    from lrbook import ResultStore

    store_dir = tmp_path / "store"
    out = tmp_path / "out.ipynb"
    nb = str(ROOT / "notebooks" / "04_hyperparameters.ipynb")
    # without runs: nothing is trained, and the page shows the paper's Table S2
    pm.execute_notebook(nb, str(out), cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3",
                        parameters=dict(store_dir=str(store_dir)))
    text = out.read_text()
    assert "nothing to train" in text and "No stored runs of the interventions for Colored MNIST / ResNet18" in text
    assert "92.203" in text  # Table S2: Colored MNIST's largest unbiased accuracy of the LR sweep
    assert not list(store_dir.glob("runs/*.json"))

    params = dict(dataset="colored_mnist", model="fcn", intervention="momentum", values=[0.5, 0.9], seeds=[0],
                  scale="smoke", device="cpu", store_dir=str(store_dir), data_root=str(mnist_root))
    pm.execute_notebook(nb, str(out), cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3",
                        parameters=params)
    df = ResultStore(store_dir).to_frame()
    assert sorted(df.momentum) == [0.5, 0.9] and set(df.lr) == {0.001} and set(df.model) == {"fcn"}
    text = out.read_text()
    assert "2 trained" in text and "Momentum 2" in text and "image/png" in text
    pm.execute_notebook(nb, str(out), cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3",
                        parameters=params)
    assert "0 trained, 2 already stored" in out.read_text()


@pytest.mark.slow
def test_synthetic_notebook_renders_a_store_without_trained_runs(tmp_path):
    """Only under-trained and diverged runs: the page renders and says what is missing."""
    import papermill as pm

    from lrbook import ResultStore, make_config
    from lrbook.experiment import run_experiment

    store = ResultStore(tmp_path / "store")
    for lr, seed in ((0.05, 0), (0.05, 1), (1e6, 0)):  # two epochs: parity is still at chance
        rec = run_experiment(make_config("parity", lr=lr, seed=seed, scale="smoke", max_epochs=2), store=store,
                             device="cpu")
        assert rec["status"] == ("diverged" if lr == 1e6 else "max_epochs")
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "01_synthetic.ipynb"), str(out), cwd=str(ROOT / "notebooks"),
                        parameters=dict(dataset="parity", scale="smoke", store_dir=str(store.root)),
                        progress_bar=False, kernel_name="python3")
    text = out.read_text()
    assert "Scale `smoke`: 3 runs, 2 LRs (0.05 to 1e+06), 1 to 2 seeds per LR; 1 diverged" in text
    assert "No run reached 100% training accuracy, so there is nothing to compare with the paper yet." in text
    assert "image/png" in text  # the panels are drawn, the attribution ones saying there is no run to show


@pytest.mark.slow
@pytest.mark.parametrize("notebook, params, message", [
    ("01_synthetic", dict(dataset="nonsense"), "unknown dataset 'nonsense'; choose from parity, moon_star (or 'all')"),
    ("02_semisynthetic", dict(model="vit"), "unknown model 'vit'; choose from fcn, cnn, resnet18"),
    ("06_mechanism", dict(scale="huge"), "unknown scale 'huge'; choose from smoke, cpu, paper"),
    ("04_hyperparameters", dict(intervention="dropout"), "unknown intervention 'dropout'; choose one of lr, high_lr_l2"),
    ("05_imagenet", dict(dataset="svhn"), "unknown dataset 'svhn'; choose from imagenet, cifar10, cifar100, mnist"),
])
def test_notebooks_reject_unknown_names_at_once(tmp_path, notebook, params, message):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as exc:
        pm.execute_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters=dict(store_dir=str(tmp_path / "store"), **params),
                            cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    assert exc.value.ename == "ConfigError" and message in exc.value.evalue


@pytest.mark.slow
def test_status_page_warns_about_a_bad_record_and_still_renders(tmp_path):
    import papermill as pm

    from lrbook import ResultStore, make_config

    store = ResultStore(tmp_path / "store")
    cfg = make_config("parity", "fcn", lr=0.1, seed=0, scale="smoke")
    store.put({"run_id": cfg.run_id, "config": cfg.to_dict(), "status": "converged", "metrics": {"test_acc": 0.9}})
    store.runs.joinpath("0123456789abcdef.json").write_text('{"run_id": "0123')  # truncated
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "status.ipynb"), str(out), parameters=dict(store_dir=str(store.root)),
                        cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")
    text = out.read_text()
    assert "1 runs in the store" in text
    assert "Warning: the store has 1 problem(s)" in text and "bad record 0123456789abcdef.json: not valid JSON" in text


@pytest.mark.slow
@pytest.mark.mnist
def test_standard_classification_notebook_trains_missing_runs_then_renders(tmp_path, mnist_root):
    """Page 05: `-p dataset mnist -p lrs [...]` and `-p dataset mnist_patch -p lr ...` train the FCN's
    missing runs, then the page draws Fig. 10, 11, the contrast maps and the patch experiment."""
    import papermill as pm

    from lrbook import ResultStore

    nb, out, store_dir = str(ROOT / "notebooks" / "05_imagenet.ipynb"), tmp_path / "out.ipynb", tmp_path / "store"
    common = dict(seeds=[0], scale="smoke", device="cpu", store_dir=str(store_dir), data_root=str(mnist_root))
    pm.execute_notebook(nb, str(out), cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3",
                        parameters=dict(dataset="mnist", lrs=[0.2, 0.4], **common))
    assert "2 trained" in out.read_text()
    pm.execute_notebook(nb, str(out), cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3",
                        parameters=dict(dataset="mnist_patch", lr=0.4, **common))
    df = ResultStore(store_dir).to_frame()
    assert sorted(zip(df.dataset, df.lr)) == [("mnist", 0.2), ("mnist", 0.4), ("mnist_patch", 0.4)]
    assert set(df.model) == {"fcn"}
    text = out.read_text()
    assert "1 trained" in text and "**Fig. 10:**" in text and "**Fig. 11:**" in text
    assert "**Fig. 8, 35, 36:** MNIST / FCN: the 6 of the first 8 test images" in text
    assert "**Patch experiment:** MNIST + patch / FCN" in text
    assert "ImageNet-1k and GPUs not available on the build machine" in text  # the paper's cells without runs


@pytest.mark.slow
def test_the_imagenet_command_without_imagenet_fails_at_once_saying_what_to_do(tmp_path):
    """The user's own command, exactly as written (no output path: the notebook goes to stdout), on a
    machine without ImageNet: it stops before training anything, naming the layout and the setting."""
    import os
    import subprocess
    import sys

    papermill = [sys.executable, "-m", "papermill"]
    env = {**os.environ, "LRBOOK_DATA": str(tmp_path / "data"), "LRBOOK_STORE": str(tmp_path / "store")}
    done = subprocess.run(papermill + ["notebooks/05_imagenet.ipynb", "-p", "lr", "0.1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "ImageNet-1k not found" in done.stderr and "imagenet/train" in done.stderr and "$LRBOOK_DATA" in done.stderr
    assert json.loads(done.stdout)["cells"]  # the executed notebook, on standard output
    assert not (tmp_path / "store" / "runs").exists() or not list((tmp_path / "store" / "runs").iterdir())
