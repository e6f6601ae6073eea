"""`engine.distributed` (PyTorch's `torch.distributed`): collectives between processes.

Processes are started by MPI (`mpiexec -n 4 python -m mpi4py train.py`, or
`tensortape launch --nproc 4 train.py`); host arrays travel through mpi4py's buffer calls
(uppercase `Allreduce`, `Bcast`, ...: never the pickling lowercase ones), CuPy arrays through NCCL
(`cupy.cuda.nccl`) when every local rank has its own GPU, else staged through host memory and MPI.

Without mpiexec (or without mpi4py installed) this is a world of size 1: every collective is the
identity, so single-process code needs no change and `import engine` never imports mpi4py.

Two failure rules keep a job from hanging (ChainerMN's and Horovod's lesson):
- an unhandled exception on any rank aborts the whole job (`python -m mpi4py` does it; for a
  script started without it, `init_process_group` installs the same excepthook);
- a rank that leaves (exits or calls `destroy_process_group`) tells the others; a rank that waits
  in a collective the leaver will never join raises a clear error instead of waiting forever.
"""

from __future__ import annotations

import atexit
import os
import sys
import time

import numpy

from .device import cupy as _cupy

__all__ = [
    "ReduceOp",
    "Work",
    "is_available",
    "is_initialized",
    "init_process_group",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "get_local_rank",
    "get_backend",
    "local_device",
    "is_mpi_launched",
    "all_reduce",
    "broadcast",
    "broadcast_coalesced",
    "all_gather",
    "broadcast_bytes",
    "all_gather_bytes",
    "abort_at_exit",
    "reports_failure",
    "barrier",
]

# Environment variables that MPI launchers set in each process they start (MPICH's hydra, Open
# MPI, Intel MPI, PMIx, Slurm's PMI): without one of them this is not a multi-process job.
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
_LEAVE_TAG = 7117  # on the control communicator: "this rank has left"
_FAIL_TAG = 7118  # on the control communicator, from rank 0: "I am failing and report it"
_QUIET_S = 1.0  # how long a failing rank > 0 waits to hear that rank 0 reports the failure


class ReduceOp:
    """Reduction operations of `all_reduce` (PyTorch's names)."""

    SUM = "sum"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    AVG = "avg"


_OPS = (ReduceOp.SUM, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX, ReduceOp.AVG)


class _Group:
    """The process group: MPI communicators, ranks, and the NCCL communicator when used."""

    def __init__(self, backend, comm, ctrl, rank, size, local_rank, local_size, nccl=None):
        self.backend, self.comm, self.ctrl = backend, comm, ctrl
        self.rank, self.size = rank, size
        self.local_rank, self.local_size = local_rank, local_size
        self.nccl = nccl  # a cupy.cuda.nccl.NcclCommunicator, or None
        self.nccl_stream = None
        self.left: list[int] = []  # ranks known to have left
        self.leave_req = None  # the pre-posted receive of a "left" message
        self.leave_buf = numpy.zeros(1, numpy.int64)
        self.calls = 0  # collectives started: named in the error when a peer has left


_group: _Group | None = None
_failed = False  # this rank died of an exception: the job is being aborted


def is_available() -> bool:
    """True when multi-process training can run here: mpi4py is installed."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def is_initialized() -> bool:
    return _group is not None


def is_mpi_launched() -> bool:
    """Whether an MPI launcher (mpiexec, srun) started this process as one rank of a job."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(
            "this process was started by an MPI launcher but mpi4py is not installed: "
            "pip install 'tensortape[mpi]' (mpi4py and MPICH)"
        ) from e
    return MPI


def init_process_group(backend: str | None = None, **_ignored) -> None:
    """Join the job's process group.

    `backend`: "mpi" (host buffers over MPI; CuPy arrays staged through host memory), "nccl"
    (CuPy arrays over NCCL, host arrays over MPI; needs one GPU per local rank), or None: NCCL
    when CuPy sees at least as many GPUs as there are ranks on this machine, else MPI.
    Outside an MPI launcher: a world of size 1 (collectives are the identity).
    Keyword arguments of PyTorch's version (init_method, world_size, rank, ...) are accepted and
    ignored: the MPI launcher decides them.
    """
    global _group
    if _group is not None:
        raise RuntimeError("init_process_group was already called (destroy_process_group first)")
    if backend not in (None, "mpi", "nccl"):
        raise ValueError(f"unknown backend {backend!r}: expected 'mpi', 'nccl' or None")
    if not is_mpi_launched():
        _group = _Group(backend or "mpi", None, None, 0, 1, 0, 1)
        return
    MPI = _mpi()
    world = MPI.COMM_WORLD
    comm, ctrl = world.Dup(), world.Dup()  # ours, apart from the user's and from the control
    local = world.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank, local_size = local.Get_rank(), local.Get_size()
    local.Free()
    g = _Group(None, comm, ctrl, comm.Get_rank(), comm.Get_size(), local_rank, local_size)
    gpus = _gpu_count()
    if backend is None:
        backend = "nccl" if gpus >= local_size and gpus > 0 else "mpi"
    if backend == "nccl":
        if gpus < local_size:
            raise RuntimeError(
                f"backend 'nccl' needs one GPU per local rank: {local_size} ranks on this machine "
                f"but CuPy sees {gpus} GPU(s); use backend='mpi' (host-staged) or fewer ranks"
            )
        _cupy().cuda.Device(local_rank).use()
        g.nccl = _nccl_communicator(g)
        g.nccl_stream = _cupy().cuda.Stream(non_blocking=True)
    g.backend = backend
    g.leave_req = ctrl.Irecv(g.leave_buf, source=MPI.ANY_SOURCE, tag=_LEAVE_TAG)
    _group = g
    _abort_on_exception()
    atexit.register(_leave_at_exit)


def _gpu_count() -> int:
    try:
        return int(_cupy().cuda.runtime.getDeviceCount())
    except Exception:  # no CuPy, or CuPy without a driver or GPU: a CPU job
        return 0


def _nccl_communicator(g: _Group):
    from cupy.cuda import nccl

    uid = numpy.zeros(128, numpy.uint8)  # an ncclUniqueId: CuPy (>= 14) gives and takes bytes
    if g.rank == 0:
        uid[:] = numpy.frombuffer(nccl.get_unique_id(), numpy.uint8)
    g.comm.Bcast(uid, root=0)
    return nccl.NcclCommunicator(g.size, uid.tobytes(), g.rank)


def _abort_on_exception() -> None:
    """Abort the whole MPI job when this rank dies of an exception (also without -m mpi4py)."""
    previous = sys.excepthook
    if getattr(previous, "_tensortape_abort", False):
        return

    def hook(kind, value, tb):
        from mpi4py.run import set_abort_status

        global _failed
        _failed = True  # abort at exit: no goodbye to the other ranks, they are killed
        set_abort_status(value if isinstance(value, SystemExit) else 1)
        if reports_failure():  # one traceback, not one per rank failing the same way
            previous(kind, value, tb)

    hook._tensortape_abort = True
    sys.excepthook = hook


def destroy_process_group() -> None:
    """Leave the group: tell the other ranks, wait for theirs (a finished job leaves together)."""
    global _group
    g = _group
    if g is None:
        return
    _group = None
    if g.comm is None:
        return
    MPI = _mpi()
    for r in range(g.size):
        if r != g.rank:
            g.ctrl.Send(numpy.array([g.rank], numpy.int64), dest=r, tag=_LEAVE_TAG)
    # Collect every other rank's "left"; while some rank still runs, it will either leave too
    # or find our message in its next collective and abort the job.
    missing = g.size - 1
    while missing:
        g.leave_req.Wait()
        missing -= 1
        if missing:
            g.leave_req = g.ctrl.Irecv(g.leave_buf, source=MPI.ANY_SOURCE, tag=_LEAVE_TAG)
    for c in (g.comm, g.ctrl):
        c.Free()


def abort_at_exit(status: int = 1) -> None:
    """This rank ends with an error it has already reported (the CLI's one line): abort the
    whole job when it exits, with `status`, instead of leaving the group (the others would
    then fail in their next collective with a message about this rank's leaving)."""
    global _failed
    if _group is None or _group.comm is None:
        return
    from mpi4py.run import set_abort_status

    _failed = True
    set_abort_status(status)


def reports_failure() -> bool:
    """This rank is failing (the job will be aborted): whether it should print its error.

    Ranks often fail together and alike (a bad option, a non-finite loss), and N copies of one
    traceback bury the message. Rank 0 tells the others that it fails and reports; a rank > 0
    stays silent if that news arrives within `_QUIET_S` seconds (rank 0 speaks for the job),
    else it reports its own error: a rank failing alone still shows its traceback. Outside a
    multi-rank group: always True.
    """
    g = _group
    if g is None or g.comm is None:
        return True
    if g.rank == 0:
        flag = numpy.ones(1, numpy.int64)
        reqs = [g.ctrl.Isend(flag, dest=r, tag=_FAIL_TAG) for r in range(1, g.size)]
        deadline = time.monotonic() + _QUIET_S
        while not all(r.Test() for r in reqs) and time.monotonic() < deadline:
            time.sleep(0.001)  # delivered (small messages go eagerly) before the abort
        return True
    deadline = time.monotonic() + _QUIET_S
    while time.monotonic() < deadline:
        if g.ctrl.Iprobe(source=0, tag=_FAIL_TAG):
            return False
        time.sleep(0.005)
    return True


def _leave_at_exit() -> None:
    if _group is not None and not _failed:
        destroy_process_group()


def _require():
    if _group is None:
        raise RuntimeError(
            "Default process group has not been initialized, "
            "please make sure to call init_process_group."
        )
    return _group


def get_rank() -> int:
    return _require().rank


def get_world_size() -> int:
    return _require().size


def is_main_process() -> bool:
    """Whether this process writes files and logs: rank 0 of an initialized group, or the one
    process when no group was initialized (single-process code needs no change)."""
    return _group is None or _group.rank == 0


def get_local_rank() -> int:
    """This process's index among the ranks on its machine (its GPU: `cuda:local_rank`)."""
    return _require().local_rank


def get_backend() -> str:
    return _require().backend


def local_device() -> str:
    """The device this rank computes on: "cuda:<local rank mod GPUs>" when CuPy sees a GPU (one
    GPU per local rank with NCCL; with more ranks than GPUs they share, host-staged), else
    "cpu". Works before `init_process_group` too (then as rank 0)."""
    gpus = _gpu_count()
    if gpus == 0:
        return "cpu"
    local = _group.local_rank if _group is not None else 0
    return f"cuda:{local % gpus}"


# Requests -------------------------------------------------------------------------------------


class Work:
    """A started collective (`async_op=True`, PyTorch's Work): `wait()` finishes it."""

    def __init__(self, group: _Group, req=None, finish=None, what: str = "collective"):
        self._group, self._req, self._finish, self._what = group, req, finish, what
        self._done = req is None and finish is None

    def wait(self) -> bool:
        if not self._done:
            if self._req is not None:
                _wait(self._group, self._req, self._what)
            if self._finish is not None:
                self._finish()
            self._done = True
        return True

    def is_completed(self) -> bool:
        return self._done


_GRACE_S = 2.0  # after a peer left: time for a collective it did join to complete here


def _wait(g: _Group, req, what: str) -> None:
    """Wait for an MPI request, or raise when a peer has left and never will join it."""
    MPI = _mpi()
    if not g.left:
        if MPI.Request.Waitany([req, g.leave_req]) == 0:
            return
        g.left.append(int(g.leave_buf[0]))
    deadline = time.monotonic() + _GRACE_S
    while time.monotonic() < deadline:
        if req.Test():
            return
        time.sleep(0.001)
    raise RuntimeError(
        f"rank {g.left[0]} has left the process group while rank {g.rank} waits in {what} "
        f"(its collective number {g.calls}): every rank must run the same collectives (the "
        "same number of steps and batches: equal shards from DistributedSampler, no "
        "rank-dependent early exit)"
    )


def _check_tensor(t, name: str):
    from .tensor import Tensor

    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(t).__name__}")
    return t


def _mpi_op(op: str):
    MPI = _mpi()
    if op not in _OPS:
        raise ValueError(f"unknown reduce op {op!r}: expected one of ReduceOp's {_OPS}")
    return {
        ReduceOp.SUM: MPI.SUM,
        ReduceOp.AVG: MPI.SUM,
        ReduceOp.PRODUCT: MPI.PROD,
        ReduceOp.MIN: MPI.MIN,
        ReduceOp.MAX: MPI.MAX,
    }[op]


def _nccl_op(op: str):
    from cupy.cuda import nccl

    return {
        ReduceOp.SUM: nccl.NCCL_SUM,
        ReduceOp.AVG: nccl.NCCL_SUM,
        ReduceOp.PRODUCT: nccl.NCCL_PROD,
        ReduceOp.MIN: nccl.NCCL_MIN,
        ReduceOp.MAX: nccl.NCCL_MAX,
    }[op]


_NCCL_TYPES = {
    "float16": "NCCL_FLOAT16",
    "float32": "NCCL_FLOAT32",
    "float64": "NCCL_FLOAT64",
    "int32": "NCCL_INT32",
    "int64": "NCCL_INT64",
    "uint8": "NCCL_UINT8",
    "int8": "NCCL_INT8",
}


def _nccl_type(dtype):
    from cupy.cuda import nccl

    name = _NCCL_TYPES.get(numpy.dtype(dtype).name)
    if name is None:
        raise TypeError(f"NCCL has no type for {numpy.dtype(dtype)}")
    return getattr(nccl, name)


def _uses_nccl(g: _Group, array) -> bool:
    return g.nccl is not None and not isinstance(array, numpy.ndarray)


def all_reduce_array(array, op: str = ReduceOp.SUM, what: str = "all_reduce") -> Work:
    """Start reducing a contiguous raw array in place over all ranks; `Work.wait()` ends it.

    Host arrays: MPI `Iallreduce`. CuPy arrays: NCCL on the group's stream (the current stream
    waits for it in `wait()`, no host sync), or staged through host memory and MPI.
    """
    g = _require()
    if op not in _OPS:
        raise ValueError(f"unknown reduce op {op!r}: expected one of ReduceOp's {_OPS}")
    scale = None if op != ReduceOp.AVG else 1.0 / g.size
    if g.size == 1:
        return Work(g)
    g.calls += 1
    if _uses_nccl(g, array):
        return _nccl_start(g, array, op, scale, what)
    if isinstance(array, numpy.ndarray):
        host, back = array, None
    else:  # a CuPy array without NCCL: through host memory
        host, back = array.get(), array
    req = g.comm.Iallreduce(_mpi().IN_PLACE, host, _mpi_op(op))

    def finish():
        if scale is not None:
            numpy.multiply(host, host.dtype.type(scale), out=host)
        if back is not None:
            back.set(host)

    return Work(g, req, finish, what)


def _nccl_start(g: _Group, array, op, scale, what) -> Work:
    cp = _cupy()
    current = cp.cuda.get_current_stream()
    g.nccl_stream.wait_event(current.record())  # the values are written before NCCL reads them
    g.nccl.allReduce(
        array.data.ptr,
        array.data.ptr,
        array.size,
        _nccl_type(array.dtype),
        _nccl_op(op),
        g.nccl_stream.ptr,
    )
    done = g.nccl_stream.record()

    def finish():
        cp.cuda.get_current_stream().wait_event(done)
        if scale is not None:
            cp.multiply(array, array.dtype.type(scale), out=array)

    return Work(g, None, finish, what)


def _contiguous_do(t, start, async_op: bool):
    """Run `start(array)` on t's array (through a contiguous copy, written back, if needed)."""
    array = t.array
    xp = t.device.xp
    flat = array if array.flags.c_contiguous else xp.ascontiguousarray(array)
    work = start(flat)
    if flat is not array:
        inner_finish = work._finish

        def finish():
            if inner_finish is not None:
                inner_finish()
            array[...] = flat

        work._finish, work._done = finish, False
    t._version[0] += 1
    if async_op:
        return work
    work.wait()
    return None


def all_reduce(tensor, op: str = ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce `tensor` over all ranks, in place (every rank gets the result)."""
    _check_tensor(tensor, "all_reduce")
    return _contiguous_do(tensor, lambda a: all_reduce_array(a, op), async_op)


def broadcast(tensor, src: int = 0, group=None, async_op: bool = False):
    """Overwrite `tensor` on every rank with rank `src`'s values, in place."""
    _check_tensor(tensor, "broadcast")
    _check_src(_require(), src, "broadcast")
    return _contiguous_do(tensor, lambda a: broadcast_array(a, src), async_op)


def _check_src(g: _Group, src: int, name: str) -> None:
    if not 0 <= src < g.size:
        raise ValueError(f"{name}: src={src} is not a rank of a world of size {g.size}")


def broadcast_array(array, src: int = 0, what: str = "broadcast") -> Work:
    """Start overwriting a contiguous raw array on every rank with rank `src`'s; `Work.wait()`
    ends it. Host arrays: MPI `Ibcast`; CuPy arrays: NCCL on the group's stream, or staged
    through host memory and MPI."""
    g = _require()
    _check_src(g, src, what)
    if g.size == 1:
        return Work(g)
    g.calls += 1
    if _uses_nccl(g, array):
        cp = _cupy()
        g.nccl_stream.wait_event(cp.cuda.get_current_stream().record())
        g.nccl.bcast(array.data.ptr, array.size, _nccl_type(array.dtype), src, g.nccl_stream.ptr)
        done = g.nccl_stream.record()
        return Work(g, None, lambda: cp.cuda.get_current_stream().wait_event(done), what)
    host = array if isinstance(array, numpy.ndarray) else array.get()
    req = g.comm.Ibcast(host, root=src)
    return Work(g, req, None if host is array else (lambda: array.set(host)), what)


# PyTorch DDP's broadcast_bucket_size: a coalesced broadcast packs at most this many bytes into
# one buffer (a tensor larger than that travels alone): the packed copy of a huge model is
# made one bucket at a time.
_COALESCE_BYTES = 250 * 2**20
_ALIGN = 16  # each tensor's bytes start 16-aligned in the buffer: its typed view is aligned


def broadcast_coalesced(tensors, src: int = 0, bucket_cap_bytes: int = _COALESCE_BYTES) -> None:
    """Overwrite every tensor in `tensors` with rank `src`'s values, in one broadcast per device
    (per `bucket_cap_bytes`) instead of one per tensor (PyTorch's `_broadcast_coalesced`, which
    DDP uses for its parameters and buffers).

    The tensors' raw bytes are packed into one flat uint8 buffer, broadcast, and unpacked: a
    byte copy, so float and integer tensors (BatchNorm's `num_batches_tracked`) share a buffer
    and every value round-trips exactly, whatever its dtype. Every rank must pass tensors of
    the same devices, shapes and dtypes in the same order."""
    g = _require()
    _check_src(g, src, "broadcast_coalesced")
    tensors = [_check_tensor(t, "broadcast_coalesced") for t in tensors]
    if g.size == 1 or not tensors:
        return
    for bucket in _byte_buckets(tensors, bucket_cap_bytes):  # one packed copy at a time
        flat, offsets = _pack_bytes(bucket)
        broadcast_array(flat, src, "broadcast_coalesced").wait()
        for t, off in zip(bucket, offsets):
            if g.rank != src:  # the source's values are already in place
                n = t.array.size * t.array.dtype.itemsize
                t.array[...] = flat[off : off + n].view(t.array.dtype).reshape(t.array.shape)
            t._version[0] += 1


def _byte_buckets(tensors: list, cap: int) -> list:
    """`tensors` grouped by device, in order, each group cut into runs of at most `cap` bytes."""
    by_device: dict[str, list] = {}
    for t in tensors:
        by_device.setdefault(str(t.device), []).append(t)
    buckets = []
    for group in by_device.values():
        current, size = [], 0
        for t in group:
            n = _aligned(t.array.size * t.array.dtype.itemsize)
            if current and size + n > cap:
                buckets.append(current)
                current, size = [], 0
            current.append(t)
            size += n
        buckets.append(current)
    return buckets


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _pack_bytes(tensors: list):
    """(one flat uint8 array on the tensors' device holding their bytes, each one's offset)."""
    xp = tensors[0].device.xp
    offsets, total = [], 0
    for t in tensors:
        offsets.append(total)
        total += _aligned(t.array.size * t.array.dtype.itemsize)
    flat = xp.zeros(total, xp.uint8)
    for t, off in zip(tensors, offsets):
        raw = xp.ascontiguousarray(t.array).reshape(-1).view(xp.uint8)
        flat[off : off + raw.size] = raw
    return flat, offsets


def all_gather(tensor_list: list, tensor, group=None, async_op: bool = False):
    """Fill `tensor_list[r]` with rank r's `tensor` (all the same shape and dtype)."""
    _check_tensor(tensor, "all_gather")
    g = _require()
    if len(tensor_list) != g.size:
        raise ValueError(
            f"all_gather: tensor_list has {len(tensor_list)} tensors for a world of size {g.size}"
        )
    for i, out in enumerate(tensor_list):
        _check_tensor(out, f"all_gather: tensor_list[{i}]")
        if out.shape != tensor.shape or out.dtype != tensor.dtype:
            raise ValueError(
                f"all_gather: tensor_list[{i}] is {out.shape} {out.dtype}, the input "
                f"{tensor.shape} {tensor.dtype}: they must match"
            )
    xp = tensor.device.xp
    send = xp.ascontiguousarray(tensor.array)
    if g.size == 1:
        tensor_list[0].array[...] = send
        tensor_list[0]._version[0] += 1
        return Work(g) if async_op else None
    g.calls += 1
    host = send if isinstance(send, numpy.ndarray) else send.get()
    recv = numpy.empty((g.size,) + host.shape, host.dtype)
    req = g.comm.Iallgather(host, recv)

    def finish():
        for r, out in enumerate(tensor_list):
            out.array[...] = recv[r] if xp is numpy else xp.asarray(recv[r])
            out._version[0] += 1

    work = Work(g, req, finish, "all_gather")
    if async_op:
        return work
    work.wait()
    return None


def barrier(group=None) -> None:
    """Wait until every rank has reached this call."""
    g = _require()
    if g.size == 1:
        return
    g.calls += 1
    _wait(g, g.comm.Ibarrier(), "barrier")


def broadcast_bytes(data: bytes | None, src: int = 0) -> bytes:
    """Rank `src`'s `data` on every rank (the others pass None): its length, then the bytes, as
    uint8 host buffers (MPI's buffer calls, never pickle). What `--resume` on N ranks uses so
    that rank 0 alone reads the checkpoint file: no shared filesystem is assumed."""
    g = _require()
    if not 0 <= src < g.size:
        raise ValueError(f"broadcast_bytes: src={src} is not a rank of a world of size {g.size}")
    if g.rank == src and not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"broadcast_bytes: rank {src} must pass bytes, got {type(data).__name__}")
    if g.size == 1:
        return bytes(data)
    length = numpy.array([len(data) if g.rank == src else 0], numpy.int64)
    g.calls += 1
    _wait(g, g.comm.Ibcast(length, root=src), "broadcast_bytes")
    if g.rank == src:
        buf = numpy.frombuffer(bytes(data), numpy.uint8).copy()
    else:
        buf = numpy.empty(int(length[0]), numpy.uint8)
    g.calls += 1
    _wait(g, g.comm.Ibcast(buf, root=src), "broadcast_bytes")
    return buf.tobytes()


def all_gather_bytes(data: bytes) -> list[bytes]:
    """Every rank's `data`, in rank order, on every rank (lengths may differ): the lengths, then
    the bytes, as uint8 host buffers (MPI's buffer calls, never pickle). Checkpoints use it to
    keep every rank's random state."""
    g = _require()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"all_gather_bytes: expected bytes, got {type(data).__name__}")
    if g.size == 1:
        return [bytes(data)]
    lengths = numpy.empty(g.size, numpy.int64)
    g.calls += 1
    _wait(g, g.comm.Iallgather(numpy.array([len(data)], numpy.int64), lengths), "all_gather")
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)])
    recv = numpy.empty(int(offsets[-1]), numpy.uint8)
    send = numpy.frombuffer(bytes(data), numpy.uint8)
    g.calls += 1
    req = g.comm.Iallgatherv(send, [recv, (lengths, offsets[:-1]), _mpi().BYTE])
    _wait(g, req, "all_gather")
    return [recv[offsets[r] : offsets[r + 1]].tobytes() for r in range(g.size)]
