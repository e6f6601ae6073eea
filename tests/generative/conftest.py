"""Fixtures shared by the generative tests: the embedded digits and the digits judge."""

from __future__ import annotations

import pytest

from engine.data import load_digits
from generative.judge import load_judge


@pytest.fixture(scope="module")
def digits():
    """The embedded digits (train, test) as TensorDatasets."""
    return load_digits()


@pytest.fixture(scope="session")
def judge(tmp_path_factory):
    """The project's judge, trained once per test session into a temp cache."""
    return load_judge(tmp_path_factory.mktemp("judge") / "judge.npz")
