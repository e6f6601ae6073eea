"""``cupy.cuda.nccl`` of the stand-in: NCCL's communicator, carried by MPI between processes.

The surface is CuPy's (``nccl_api.py``, generated from CuPy's compiled module by
``gen_nccl_api.py``): the same enums, the same methods with the same C parameter types, checked
as Cython checks them (an ``int``/``intptr_t``/``size_t`` takes a Python or NumPy integer, never
a float or a tuple; ``commId`` must be ``bytes``; a negative ``size_t`` overflows). Buffers are
raw device pointers (``ndarray.data.ptr``), read and written through the address as NCCL does,
so a wrong pointer, count or datatype gives wrong numbers here too. Collectives run at once
(stand-in streams are synchronous); each rank must be on its own device, as NCCL demands
("Duplicate GPU detected"). Simulated: allReduce, bcast, broadcast, allGather; CuPy's other
methods exist, check their arguments and raise NotImplementedError.
"""

from __future__ import annotations

import ctypes
import os
import socket

import numpy as np

from ... import nccl_api
from . import runtime

available = True
globals().update(nccl_api.ENUMS)  # NCCL_SUM, NCCL_FLOAT32, ...: CuPy's names and NCCL's values

_DTYPES = {0: np.int8, 1: np.uint8, 2: np.int32, 3: np.uint32, 4: np.int64, 5: np.uint64}
_DTYPES.update({6: np.float16, 7: np.float32, 8: np.float64})


class NcclError(RuntimeError):
    """As ``cupy_backends.cuda.libs.nccl.NcclError``."""


def _check(where: str, params: tuple, args: tuple) -> list:
    """Cython's argument conversion for CuPy's signature `params` (name, C type[, default])."""
    if len(args) > len(params) or len(args) < sum(len(p) == 2 for p in params):
        raise TypeError(f"{where}() takes {len(params)} arguments ({len(args)} given)")
    out = []
    for (name, ctype, *_), value in zip(params, args):
        if ctype in ("int", "intptr_t", "size_t"):
            if isinstance(value, (bool, float)) or not hasattr(value, "__index__"):
                raise TypeError(
                    f"{where}(): {name} ({ctype}) needs an integer, got {type(value).__name__}"
                )
            value = int(value)
            if ctype == "size_t" and value < 0:
                raise OverflowError(f"{where}(): can't convert negative value to size_t ({name})")
        elif ctype == "bytes" and not isinstance(value, bytes):
            raise TypeError(f"{where}(): {name} must be bytes, not {type(value).__name__}")
        out.append(value)
    return out


def get_unique_id() -> bytes:
    return os.urandom(128)  # ncclUniqueId: 128 bytes


def get_version() -> int:
    return 22703


def get_build_version() -> int:
    return 22703


def groupStart() -> None:  # noqa: N802 (CuPy's names)
    pass


def groupEnd() -> None:  # noqa: N802
    pass


def _view(ptr: int, count: int, datatype: int) -> np.ndarray:
    if datatype not in _DTYPES:
        raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: datatype {datatype}")
    dtype = np.dtype(_DTYPES[datatype])
    if count == 0:
        return np.empty(0, dtype)
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(raw, dtype, count)


class NcclCommunicator:
    """One rank's communicator over all ranks of the MPI job (``MPI.COMM_WORLD``)."""

    def __init__(self, *args):
        ndev, comm_id, rank = _check(
            "NcclCommunicator", nccl_api.FUNCTIONS["NcclCommunicator"], args
        )[:3]
        from mpi4py import MPI

        world = MPI.COMM_WORLD
        if ndev != world.Get_size() or rank != world.Get_rank():
            raise NotImplementedError(
                "the NCCL stand-in models one communicator over every MPI rank "
                f"(ndev={ndev}, rank={rank}; MPI: {world.Get_size()} ranks, this is "
                f"{world.Get_rank()})"
            )
        if len(comm_id) != 128:
            raise NcclError("NCCL_ERROR_INVALID_ARGUMENT: commId is not an ncclUniqueId")
        self._comm = world.Dup()
        ids = self._comm.allgather(comm_id)  # setup only (NCCL's bootstrap), not a data path
        if len(set(ids)) != 1:
            raise NcclError("NCCL_ERROR_INVALID_USAGE: ranks passed different commIds")
        self._device = runtime.getDevice()
        where = self._comm.allgather((socket.gethostname(), self._device))
        if len(set(where)) != len(where):
            raise NcclError(
                f"NCCL_ERROR_INVALID_USAGE: Duplicate GPU detected: rank {rank} and another "
                f"rank both on device {self._device} of {socket.gethostname()}"
            )
        self._rank, self._size = rank, ndev

    def _call(self, name: str, args: tuple) -> list:
        if self._comm is None:
            raise NcclError("NCCL_ERROR_INVALID_ARGUMENT: the communicator was destroyed")
        return _check(f"NcclCommunicator.{name}", nccl_api.COMMUNICATOR[name], args)

    def allReduce(self, *args) -> None:  # noqa: N802
        from mpi4py import MPI

        send, recv, count, datatype, op, _stream = self._call("allReduce", args)
        ops = {0: MPI.SUM, 1: MPI.PROD, 2: MPI.MAX, 3: MPI.MIN, 4: MPI.SUM}
        if op not in ops:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: op {op}")
        out = _view(recv, count, datatype)
        source = MPI.IN_PLACE if send == recv else _view(send, count, datatype)
        self._comm.Allreduce(source, out, ops[op])
        if op == 4:  # ncclAvg
            out[...] = out / self._size

    def bcast(self, *args) -> None:
        buff, count, datatype, root, _stream = self._call("bcast", args)
        self._comm.Bcast(_view(buff, count, datatype), root=root)

    def broadcast(self, *args) -> None:
        send, recv, count, datatype, root, _stream = self._call("broadcast", args)
        out = _view(recv, count, datatype)
        if self._rank == root and send != recv:
            out[...] = _view(send, count, datatype)
        self._comm.Bcast(out, root=root)

    def allGather(self, *args) -> None:  # noqa: N802
        send, recv, count, datatype, _stream = self._call("allGather", args)
        self._comm.Allgather(
            _view(send, count, datatype).copy(), _view(recv, count * self._size, datatype)
        )

    def device_id(self) -> int:
        return self._device

    def rank_id(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def destroy(self) -> None:
        if self._comm is not None:
            self._comm.Free()
            self._comm = None

    def abort(self) -> None:
        self.destroy()

    def check_async_error(self) -> None:
        pass

    # CuPy's other methods: arguments checked, then not simulated
    def _unsimulated(self, name: str, args: tuple):
        self._call(name, args)
        raise NotImplementedError(f"NcclCommunicator.{name} is not simulated by the stand-in")

    def reduce(self, *args) -> None:
        self._unsimulated("reduce", args)

    def reduceScatter(self, *args) -> None:  # noqa: N802
        self._unsimulated("reduceScatter", args)

    def send(self, *args) -> None:
        self._unsimulated("send", args)

    def recv(self, *args) -> None:
        self._unsimulated("recv", args)

    def commSplit(self, *args):  # noqa: N802
        self._unsimulated("commSplit", args)

    @staticmethod
    def initAll(*args):  # noqa: N802
        raise NotImplementedError("NcclCommunicator.initAll is not simulated by the stand-in")
