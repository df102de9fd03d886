"""Shared fixtures: the digits written as images, split once, and a small model trained once."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the test modules import classify_data
from classify_data import DIGIT_AUGMENT, TINY_RESNET, write_digits  # noqa: E402


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits") / "images")


@pytest.fixture(scope="session")
def digits_split(digits_dir, tmp_path_factory):
    from kubik_core.classify.manifest import read_dataset
    from kubik_core.classify.split import split_samples, write_split

    out = tmp_path_factory.mktemp("digits_split")
    write_split(split_samples(read_dataset(digits_dir), 0.1, 0.1, seed=0), out)
    return out


@pytest.fixture(scope="session")
def trained_run(digits_split, tmp_path_factory):
    """A tiny ResNet trained 6 epochs on the digits split (a short schedule: ~97 % test accuracy)."""
    from kubik_core.classify.train import TrainConfig, train

    out = tmp_path_factory.mktemp("digits_run")
    return train(TrainConfig(data=str(digits_split), out=str(out), architecture="resnet18",
                             model_kwargs=TINY_RESNET, img_size=32, epochs=6, batch_size=64, lr=3e-3,
                             augment=DIGIT_AUGMENT, show_progress=False))


@pytest.fixture(scope="session")
def small_split(tmp_path_factory):
    """240 digits (24 per class), split 80/10/10: for tests of the training machinery, not accuracy."""
    from sklearn.datasets import load_digits

    from kubik_core.classify.manifest import read_dataset
    from kubik_core.classify.split import split_samples, write_split

    targets = load_digits().target
    chosen = [i for c in range(10) for i in (targets == c).nonzero()[0][:24]]
    images = write_digits(tmp_path_factory.mktemp("small") / "images", chosen)
    out = tmp_path_factory.mktemp("small_split")
    write_split(split_samples(read_dataset(images), 0.1, 0.1, seed=0), out)
    return out


def pytest_collection_modifyitems(config, items):
    """Tests that need the trained digits model share its ~30 s of training: mark them slow."""
    here = Path(__file__).parent
    for item in items:
        if "trained_run" in getattr(item, "fixturenames", ()) and here in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)
