"""``cupy.testing`` of the stand-in: NumPy's assertions, accepting device or host arrays."""

from __future__ import annotations

import numpy as _np

from ._array import ndarray as _ndarray


def _host(x):
    return x.get() if isinstance(x, _ndarray) else x


def assert_allclose(actual, desired, rtol=1e-7, atol=0, err_msg="", verbose=True):
    _np.testing.assert_allclose(_host(actual), _host(desired), rtol, atol, err_msg=err_msg)


def assert_array_equal(actual, desired, err_msg="", verbose=True, *, strict=False):
    _np.testing.assert_array_equal(_host(actual), _host(desired), err_msg=err_msg, strict=strict)


def assert_array_almost_equal(actual, desired, decimal=6, err_msg="", verbose=True):
    _np.testing.assert_array_almost_equal(_host(actual), _host(desired), decimal, err_msg=err_msg)
