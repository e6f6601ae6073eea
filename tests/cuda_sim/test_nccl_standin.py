"""The NCCL stand-in has CuPy's surface (nccl_api.py, generated from CuPy's compiled module) and
converts arguments as Cython does; its data path runs under mpiexec in
tests/engine/test_distributed.py."""

from __future__ import annotations

import pytest

from cuda_sim import nccl_api
from cuda_sim.cupy.cuda import nccl


def test_enums_and_methods_are_cupys():
    for name, value in nccl_api.ENUMS.items():
        assert getattr(nccl, name) == value
    assert (nccl.NCCL_FLOAT32, nccl.NCCL_FLOAT64, nccl.NCCL_SUM, nccl.NCCL_AVG) == (7, 8, 0, 4)
    for name in nccl_api.COMMUNICATOR:
        assert callable(getattr(nccl.NcclCommunicator, name)), name
    public = {n for n in vars(nccl.NcclCommunicator) if not n.startswith("_")}
    assert public == set(nccl_api.COMMUNICATOR)  # nothing CuPy lacks
    assert isinstance(nccl.get_unique_id(), bytes) and len(nccl.get_unique_id()) == 128


def test_arguments_are_converted_as_cython_does():
    params = nccl_api.COMMUNICATOR["allReduce"]
    assert nccl._check("allReduce", params, (1, 1, 4, 7, 0, 0)) == [1, 1, 4, 7, 0, 0]
    with pytest.raises(TypeError, match="count \\(size_t\\) needs an integer, got float"):
        nccl._check("allReduce", params, (1, 1, 4.0, 7, 0, 0))
    with pytest.raises(OverflowError, match="size_t"):
        nccl._check("allReduce", params, (1, 1, -1, 7, 0, 0))
    with pytest.raises(TypeError, match="takes 6 arguments"):
        nccl._check("allReduce", params, (1, 1, 4, 7, 0))
    with pytest.raises(TypeError, match="commId must be bytes, not tuple"):
        nccl.NcclCommunicator(2, tuple(range(128)), 0)  # CuPy 13's id type: refused by 14
