"""Shared fixtures: the real images under ../shared/data and the embedded photographs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ci_guard import skip_or_fail

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDSR_TF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# Every test, and every module/session fixture, starts from the same seed, so random weights and data
# cannot make a run pass or fail by luck, nor by test order. Set EDSR_TF_TEST_SEED to another value
# to check that no test depends on the particular draw.
TEST_SEED = int(os.environ.get("EDSR_TF_TEST_SEED", "0"))


def _require_shared(sub: str = "") -> Path:
    path = SHARED_DATA / sub
    if path.exists():
        return path
    skip_or_fail(f"{path} not found: the benchmark images of ../shared/data are absent in this clone")


def _seed() -> None:
    """Seeds Python, NumPy, TF and Keras with TEST_SEED."""
    import keras

    keras.utils.set_random_seed(TEST_SEED)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Seeds before each test (see TEST_SEED)."""
    _seed()


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Seeds before each module/session fixture is built too: those run before the test's own
    seeding, so their random weights would otherwise depend on which tests ran before them."""
    if fixturedef.scope != "function":
        _seed()
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skips where absent (a user's clone), fails under CI=true."""
    return _require_shared()


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph (scikit-image's 'chelsea', 300×451 RGB uint8)."""
    from edsr_tf.sample_data import sample_image

    return sample_image("chelsea")
