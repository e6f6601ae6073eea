"""engine.backends.cuda.matmul.allow_tf32: PyTorch's default (False), switching CuPy's cuBLAS
compute type for float32 (what matmul, linear and the conv GEMMs use)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import engine


@pytest.fixture
def restore_tf32():
    before = engine.backends.cuda.matmul.allow_tf32
    yield
    engine.backends.cuda.matmul.allow_tf32 = before


def test_allow_tf32_switches_cupys_float32_compute_type(device, restore_tf32):
    assert engine.backends.cuda.matmul.allow_tf32 is False  # PyTorch's default
    engine.backends.cuda.matmul.allow_tf32 = True
    assert engine.backends.cuda.matmul.allow_tf32 is True
    if device == "cuda":
        lin = importlib.import_module("cupy._core._routines_linalg")
        assert lin.get_compute_type(np.float32) == lin.COMPUTE_TYPE_TF32
        assert lin.get_compute_type(np.float16) != lin.COMPUTE_TYPE_TF32  # float32 only
        a = engine.randn(8, 8, device=device)
        assert (a @ a).dtype == np.float32  # GEMMs still run and return float32
    engine.backends.cuda.matmul.allow_tf32 = False
    assert engine.backends.cuda.matmul.allow_tf32 is False
    if device == "cuda":
        assert lin.get_compute_type(np.float32) == lin.COMPUTE_TYPE_DEFAULT


def test_allow_tf32_takes_only_a_bool(restore_tf32):
    with pytest.raises(TypeError, match="allow_tf32 must be a bool"):
        engine.backends.cuda.matmul.allow_tf32 = 1
