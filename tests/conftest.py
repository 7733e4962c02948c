"""Shared fixtures for the lrbook tests.

* torch uses one thread (the test machine's cores are shared with running sweeps);
* every test session gets its own results store in a temporary folder ($LRBOOK_STORE), so no test
  writes into the checkout's results/, and evaluates CIFAR / ImageNet backgrounds with an untrained
  DeepLabV3 ($LRBOOK_SEGMENTER=untrained);
* tests that need real MNIST carry the `mnist` marker and are skipped, with the reason, when it is
  absent (it lies at ../shared/data/MNIST/raw in this workplace, or wherever $LRBOOK_DATA says).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
MNIST_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def mnist_root() -> Path:
    """The folder holding MNIST/raw: $LRBOOK_DATA if set, else ../shared/data."""
    env = os.environ.get("LRBOOK_DATA")
    return Path(env).expanduser() if env else MNIST_ROOT


def _mnist_missing_reason() -> str | None:
    if os.environ.get("LRBOOK_DATA"):
        return None  # the user pointed us at it: let a wrong path fail loudly
    if not (MNIST_ROOT / "MNIST" / "raw").is_dir():
        return f"real MNIST not found at {MNIST_ROOT / 'MNIST' / 'raw'}; set LRBOOK_DATA"
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "mnist: needs real MNIST (../shared/data or LRBOOK_DATA)")


def pytest_collection_modifyitems(config, items):
    reason = _mnist_missing_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "mnist" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _session_store(tmp_path_factory):
    """Point $LRBOOK_STORE at a temporary folder for the whole session (inherited by subprocesses)."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("session_store")
    mp.setenv("LRBOOK_STORE", str(path))
    # No test has DeepLabV3's real weights: CIFAR / ImageNet runs evaluate with an untrained one.
    mp.setenv("LRBOOK_SEGMENTER", "untrained")
    yield path
    mp.undo()


@pytest.fixture
def tmp_store(tmp_path):
    from lrbook.store import ResultStore

    return ResultStore(tmp_path / "store")


@pytest.fixture(scope="session", name="mnist_root")
def _mnist_root_fixture():
    return mnist_root()
