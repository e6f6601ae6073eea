"""`layers.parallel` (PyTorch's `torch.nn.parallel`): `DistributedDataParallel`, and an exact
distributed evaluation.

Every rank holds the same model; each runs forward and backward on its own shard of the global
batch, and DDP averages the gradients over the ranks during the backward, so every replica takes
the same optimizer step (N ranks x batch b train like one process x batch N b).

How (PyTorch DDP's and Horovod's design): the parameters are grouped, in reverse registration
order (about the order backward produces their gradients), into buckets of at most
`bucket_cap_mb`, one flat buffer each. A post-accumulate-grad hook copies a parameter's gradient
into its bucket; when a bucket is complete its all-reduce starts (MPI `Iallreduce`, or NCCL on a
stream) while backward goes on with earlier layers; buckets always start in index order, so every
rank issues the same collectives in the same order. At the end of the backward walk DDP waits for
them, zero-fills the slots of parameters that got no gradient this step (a frozen branch, the
other network of a GAN) so no rank waits for a bucket that never fills, and writes the averages
back into `.grad`. A parameter that got no gradient on any rank keeps `.grad` as it was: which
ones, a map of 0/1 flags summed over the ranks, rides in the last bucket (host buckets; its own
MPI all-reduce beside device buckets). Buffers (BatchNorm's running statistics) are broadcast
from rank 0 before each training forward in one coalesced broadcast per device, as are the
parameters and buffers when DDP is built. A step thus costs one collective per bucket, plus one
per forward of a module with buffers.
"""

from __future__ import annotations

import contextlib

import numpy

import engine
from engine import Tensor, autograd
from engine import distributed as dist

from .module import Module

__all__ = ["DistributedDataParallel", "distributed_evaluate"]


class _Bucket:
    """One flat buffer holding the gradients of `params`, then `extra` slots (the used-map)."""

    def __init__(self, index: int, params: list, xp, dtype, extra: int = 0):
        self.index, self.params = index, params
        self.offsets, total = [], 0
        for p in params:
            self.offsets.append(total)
            total += p.numel()
        self.size = total
        self.buffer = xp.zeros(total + extra, dtype)
        self.ready = [False] * len(params)
        self.pending = len(params)
        self.work = None

    def reset(self) -> None:
        self.ready = [False] * len(self.params)
        self.pending = len(self.params)
        self.work = None


class DistributedDataParallel(Module):
    """Data-parallel training of `module` over the ranks of `engine.distributed`.

    Build it after `dist.init_process_group()`; it broadcasts rank 0's parameters and buffers so
    every replica starts equal. `broadcast_buffers=True` (PyTorch's default) also broadcasts the
    buffers (BatchNorm's running statistics) from rank 0 before each forward. The gradient of each
    parameter after `backward()` is the average over ranks; `with ddp.no_sync():` skips the
    averaging (gradient accumulation: the next synchronised backward averages the sum).
    Randomness: seed the model identically (it is broadcast anyway) and then draw dropout masks
    and latents with `engine.manual_seed(seed + rank)`, or the ranks draw the same samples.
    `device_ids`, `output_device`, `find_unused_parameters` and `gradient_as_bucket_view` are
    accepted for scripts written for PyTorch; unused parameters are always handled.
    """

    def __init__(
        self,
        module: Module,
        device_ids=None,
        output_device=None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group=None,
        bucket_cap_mb: float = 25.0,
        find_unused_parameters: bool = False,
        gradient_as_bucket_view: bool = False,
    ):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps a Module, got {type(module).__name__}")
        if not dist.is_initialized():
            raise RuntimeError(
                "DistributedDataParallel needs a process group: call "
                "engine.distributed.init_process_group() first"
            )
        if not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.world_size = dist.get_world_size()
        self.require_backward_grad_sync = True
        self._params = _unique([p for p in module.parameters() if p.requires_grad])
        self._sync_module_states()
        self._buckets = self._build_buckets(int(bucket_cap_mb * 2**20))
        self._where = {id(p): (b, i) for b in self._buckets for i, p in enumerate(b.params)}
        # 1 where this rank has a gradient, summed over ranks once per backward (PyTorch's
        # local_used_map), so that a parameter no rank used keeps its .grad. Read on the host.
        self._used = numpy.zeros(len(self._params), numpy.int32)
        last = self._buckets[-1] if self._buckets else None
        self._flags = last if last is not None and last.buffer.size > last.size else None
        self._index = {id(p): k for k, p in enumerate(self._params)}
        self._next = 0  # the next bucket to start: buckets start in index order on every rank
        self._armed = False  # a backward of this step has queued the final wait
        self.bucket_log: list[tuple[int, bool]] = []  # (bucket, started inside backward)
        self._handles = [
            p.register_post_accumulate_grad_hook(self._grad_ready) for p in self._params
        ]

    # Construction ---------------------------------------------------------------------------
    def _sync_module_states(self) -> None:
        dist.broadcast_coalesced(list(self.module.parameters()) + list(self.module.buffers()), 0)

    def _build_buckets(self, cap_bytes: int) -> list:
        groups, current, nbytes, key = [], [], 0, None
        for p in reversed(self._params):
            k = (str(p.device), p.dtype)
            size = p.numel() * p.dtype.itemsize
            if current and (k != key or nbytes + size > cap_bytes):
                groups.append(current)
                current, nbytes = [], 0
            current.append(p)
            nbytes += size
            key = k
        if current:
            groups.append(current)
        # The used-map rides in the last bucket, as len(params) extra slots summed with its
        # gradients: every rank starts that bucket only after every parameter's slot (and so
        # its flag) is final, and a backward then costs one collective per bucket, no more.
        # Only in a host bucket: on a device, reading the flags back would be a device-to-host
        # copy (a sync) before any .grad is written, so there the map stays a host array of
        # its own, all-reduced over MPI (as PyTorch all-reduces its map, separately).
        buckets = []
        for i, ps in enumerate(groups):
            xp = ps[0].device.xp
            extra = len(self._params) if i == len(groups) - 1 and xp is numpy else 0
            buckets.append(_Bucket(i, ps, xp, ps[0].dtype, extra))
        return buckets

    # Forward --------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self.broadcast_buffers and self.world_size > 1 and self.module.training:
            # all buffers in one coalesced broadcast per device (PyTorch's _sync_buffers)
            dist.broadcast_coalesced(list(self.module.buffers()), 0)
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside: gradients accumulate locally, no collective (every rank must do the same)."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    # The gradient path ----------------------------------------------------------------------
    def _grad_ready(self, p: Tensor) -> None:
        if not self.require_backward_grad_sync:
            return
        if not self._armed:
            self._armed = True
            autograd.queue_callback(self._finish)
        bucket, i = self._where[id(p)]
        if bucket.ready[i] or bucket.work is not None:
            return
        self._pack(bucket, i, p.grad.array)
        bucket.ready[i] = True
        bucket.pending -= 1
        self._start_ready(inside_backward=True)

    def _pack(self, bucket: _Bucket, i: int, grad) -> None:
        p = bucket.params[i]
        off, n = bucket.offsets[i], p.numel()
        if grad is None:
            bucket.buffer[off : off + n] = 0
        else:
            bucket.buffer[off : off + n] = grad.reshape(-1)
            self._used[self._index[id(p)]] = 1

    def _start_ready(self, inside_backward: bool) -> None:
        while self._next < len(self._buckets) and self._buckets[self._next].pending == 0:
            b = self._buckets[self._next]
            if b is self._flags:  # every flag is final now (see _build_buckets)
                b.buffer[b.size :] = self._used
            b.work = dist.all_reduce_array(b.buffer, what=f"DDP bucket {b.index}")
            self.bucket_log.append((b.index, inside_backward))
            self._next += 1

    def _finish(self) -> None:
        """End of the backward walk: fill what never came, start the rest, wait, unpack."""
        self._armed = False
        for b in self._buckets[self._next :]:
            for i, p in enumerate(b.params):
                if not b.ready[i]:
                    # no gradient from this backward: a gradient accumulated under no_sync
                    # still counts; none at all is a zero that says "unused" in its flag
                    self._pack(b, i, None if p.grad is None else p.grad.array)
                    b.ready[i] = True
            b.pending = 0
        self._start_ready(inside_backward=False)
        if self._flags is None:
            dist.all_reduce_array(self._used, what="DistributedDataParallel used-map").wait()
        for b in self._buckets:
            b.work.wait()
        if self._flags is not None:  # sums of 0s and 1s: > 0 is exact in any float dtype
            self._used[:] = self._flags.buffer[self._flags.size :] > 0
        scale = 1.0 / self.world_size
        for b in self._buckets:
            buf = b.buffer
            for i, p in enumerate(b.params):
                if not self._used[self._index[id(p)]]:  # no rank had a gradient: keep .grad
                    continue
                off, n = b.offsets[i], p.numel()
                g = buf[off : off + n].reshape(p.shape) * buf.dtype.type(scale)
                p.grad = Tensor._wrap(g, p.device)
            b.reset()
        self._used[:] = 0
        self._next = 0


def _unique(params: list) -> list:
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def distributed_evaluate(model, dataset, batch_size: int, loss_fn=None, device=None) -> dict:
    """Mean loss and accuracy of a classifier over the whole `dataset`, each sample counted once.

    Rank r evaluates samples r, r + N, r + 2N, ... (no padding, so no duplicate is counted);
    the sums (loss, correct, count) are all-reduced once in float64. In a world of one this is a
    plain evaluation. `loss_fn(logits, targets)` must return the batch mean (the default is
    cross-entropy); the result is {"loss", "accuracy", "count"}.
    """
    from engine.data import DataLoader

    F = engine.functional
    loss_fn = loss_fn or F.cross_entropy
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    shard = numpy.arange(rank, len(dataset), world)  # no padding: each sample once
    was_training = model.training
    model.eval()
    sums = numpy.zeros(3, numpy.float64)  # loss sum, correct, count
    with engine.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size, sampler=shard, device=device):
            logits = model(x)
            n = len(y)
            sums[0] += float(loss_fn(logits, y).item()) * n
            sums[1] += float((logits.argmax(1) == y).sum().item())
            sums[2] += n
    model.train(was_training)
    if world > 1:
        dist.all_reduce_array(sums, what="distributed_evaluate").wait()
    count = int(sums[2])
    return {
        "loss": sums[0] / max(count, 1),
        "accuracy": sums[1] / max(count, 1),
        "count": count,
    }
