"""engine.set_num_threads / get_num_threads: the BLAS thread count, as torch's functions."""

import numpy as np
import pytest

import engine


@pytest.fixture
def restore_threads():
    before = engine.get_num_threads()
    yield
    engine.set_num_threads(before)


def test_set_and_get(restore_threads):
    engine.get_num_threads()
    pytest.importorskip("scipy.linalg")  # may load a second OpenBLAS after the first call
    engine.set_num_threads(2)
    assert engine.get_num_threads() == 2
    engine.set_num_threads(1)
    assert engine.get_num_threads() == 1
    from threadpoolctl import threadpool_info

    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)  # NumPy's BLAS itself
    a = np.ones((64, 64), np.float32)
    np.testing.assert_array_equal(a @ a, np.full((64, 64), 64, np.float32))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_bad_counts(bad, restore_threads):
    with pytest.raises(ValueError, match="set_num_threads expects an int >= 1"):
        engine.set_num_threads(bad)
