"""One rank of a distributed test: `mpiexec -n 2 python -m mpi4py tests/mpi_worker.py CASE OUT`.

Run by `helpers.run_ranks` (a subprocess with a timeout; pytest itself never runs under mpiexec,
where one rank's failing assert would hang the others). Each case computes on every rank and
writes what it measured to OUT/rank<r>.json; the test asserts on those numbers. Cases that
compare N ranks x batch b with one process x batch N b run the one-process reference on rank 0,
from the same seed, after the distributed run.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

import engine
import engine.distributed as dist
import engine.functional as F
import layers as nn
import optimizers as optim
from generative.callbacks import Callback

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def _flat(module) -> np.ndarray:
    return np.concatenate([p.numpy().ravel() for p in module.parameters()])


def _replicas_identical(module) -> bool:
    """All ranks' parameters bit-identical (compared as raw bytes, gathered from every rank)."""
    return _same_everywhere(_flat(module))


def _same_everywhere(array: np.ndarray) -> bool:
    """`array` bit-identical on every rank (its raw bytes gathered from every rank)."""
    mine = engine.tensor(np.ascontiguousarray(array).view(np.int32).astype(np.int64))
    out = [engine.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(out, mine)
    return all(np.array_equal(o.numpy(), out[0].numpy()) for o in out)


# Collectives ---------------------------------------------------------------------------------


@case
def collectives(rank, world, args):
    t = engine.tensor(np.arange(4.0, dtype=np.float32) * (rank + 1))
    dist.all_reduce(t)
    m = engine.tensor([float(rank), -float(rank)])
    dist.all_reduce(m, op=dist.ReduceOp.MAX)
    avg = engine.tensor(np.full((3, 2), rank + 1.0)).T  # not contiguous: copied and written back
    dist.all_reduce(avg, op=dist.ReduceOp.AVG)
    b = engine.tensor(np.full(3, 10.0 * rank))
    dist.broadcast(b, world - 1)
    out = [engine.zeros(2, dtype="int64") for _ in range(world)]
    dist.all_gather(out, engine.tensor([rank, rank * rank], dtype="int64"))
    dist.barrier()
    w = engine.tensor(np.ones(5), requires_grad=True)
    work = dist.all_reduce(w.detach(), async_op=True)
    work.wait()
    sent = bytes([0, 1, 2, 3, 255] * 200_000) if rank == 0 else None
    got = dist.broadcast_bytes(sent, src=0)
    empty = dist.broadcast_bytes(b"" if rank == 0 else None)
    return {
        "coalesced": _coalesced(rank, world, "cpu"),
        "bytes": list(got),
        "empty": len(empty),
        "main": dist.is_main_process(),
        "sum": t.tolist(),
        "max": m.tolist(),
        "avg": avg.tolist(),
        "bcast": b.tolist(),
        "gather": [o.tolist() for o in out],
        "async": w.tolist(),
        "rank": dist.get_rank(),
        "world": dist.get_world_size(),
        "local_rank": dist.get_local_rank(),
        "backend": dist.get_backend(),
    }


def _coalesced(rank, world, dev) -> dict:
    """broadcast_coalesced from the last rank of float32, int64 (beyond float64's exact range),
    bool, float64, a 0-d and a transposed (non-contiguous) tensor, and an empty one: in one
    buffer, then in buckets of at most 32 bytes."""
    out = {}
    for name, cap in (("one", 2**28), ("small", 32)):
        big = 2**60 + 3 + rank
        ts = {
            "f32": engine.tensor(np.arange(5, dtype=np.float32) + 0.25 * rank, device=dev),
            "i64": engine.tensor(np.array([big, -big, 7 * rank], np.int64), device=dev),
            "bool": engine.tensor(np.array([rank == 0, rank == 1, True]), device=dev),
            "f64_0d": engine.tensor(np.float64(1.0 / 3 + rank), device=dev),
            "f64_T": engine.tensor(np.arange(6.0).reshape(2, 3) * (rank + 1), device=dev).T,
            "empty": engine.zeros(0, device=dev),
        }
        before = dist._group.calls
        dist.broadcast_coalesced(list(ts.values()), src=world - 1, bucket_cap_bytes=cap)
        out[name] = {k: t.cpu().numpy().tolist() for k, t in ts.items()}
        out[name]["calls"] = dist._group.calls - before
    return out


# Training: N ranks x b == 1 process x N b ----------------------------------------------------


def _mlp(norm: str | None):
    engine.manual_seed(0)
    layers = [nn.Linear(6, 16)]
    if norm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)]
    model = nn.Sequential(*layers)
    if norm == "sync":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


_OPTS = {
    "momentum": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "nesterov": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=1e-3),
}


def _data(steps: int, batch: int):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(steps, batch, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=(steps, batch))
    return x, y


def _train(model, opt, x, y, lo: int, hi: int) -> None:
    for s in range(len(x)):
        opt.zero_grad()
        loss = F.cross_entropy(model(engine.tensor(x[s, lo:hi])), engine.tensor(y[s, lo:hi]))
        loss.backward()
        opt.step()


@case
def train(rank, world, args):
    """For each optimizer and norm: max |DDP - one process| after the steps, replicas equal."""
    steps, b = int(args[0]), 4
    x, y = _data(steps, b * world)
    results = {}
    for opt_name in ("momentum", "nesterov", "adam"):
        for norm in (None, "sync", "bn") if opt_name == "momentum" else (None,):
            model = _mlp(norm)
            ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.001)
            opt = _OPTS[opt_name](ddp.parameters())
            _train(ddp, opt, x, y, rank * b, (rank + 1) * b)
            key = f"{opt_name}/{norm}"
            results[key] = {"identical": _replicas_identical(model), "buckets": len(ddp._buckets)}
            if rank == 0:
                ref = _mlp("bn" if norm else None)
                _train(ref, _OPTS[opt_name](ref.parameters()), x, y, 0, b * world)
                results[key]["max_diff"] = float(np.abs(_flat(model) - _flat(ref)).max())
                if norm:
                    bn_ours = next(m for m in model.modules() if hasattr(m, "running_var"))
                    bn_ref = next(m for m in ref.modules() if isinstance(m, nn.BatchNorm1d))
                    results[key]["running_var_diff"] = float(
                        np.abs(bn_ours.running_var.numpy() - bn_ref.running_var.numpy()).max()
                    )
    return results


@case
def overlap(rank, world, args):
    """Buckets start inside backward, the first before the early layers' gradients exist."""
    model = _mlp(None)
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.001)
    first = model[0].weight
    events = []
    first.register_post_accumulate_grad_hook(lambda p: events.append("first layer grad"))
    original = dist.all_reduce_array

    def spy(array, *a, **k):
        events.append("all-reduce started")
        return original(array, *a, **k)

    nn.parallel.dist.all_reduce_array = spy
    x, y = _data(1, 4)
    F.cross_entropy(ddp(engine.tensor(x[0])), engine.tensor(y[0])).backward()
    nn.parallel.dist.all_reduce_array = original
    return {"events": events, "log": ddp.bucket_log, "buckets": len(ddp._buckets)}


@case
def unused(rank, world, args):
    """A branch used on rank 0 only, one used nowhere, no_sync accumulation."""
    engine.manual_seed(0)
    net = nn.ModuleDict({"a": nn.Linear(3, 2), "b": nn.Linear(3, 2), "never": nn.Linear(3, 2)})
    ddp = nn.parallel.DistributedDataParallel(net)
    x = engine.tensor(np.full((1, 3), rank + 1.0, np.float32))
    out = net["a"](x).sum() + (net["b"](x).sum() if rank == 0 else 0.0)
    out.backward()  # the 'b' gradient is rank 0's, halved; 'never' stays without a gradient
    res = {
        "a_grad": net["a"].weight.grad.tolist(),
        "b_grad": net["b"].weight.grad.tolist(),
        "never_grad_is_none": net["never"].weight.grad is None,
    }
    net.zero_grad()
    with ddp.no_sync():
        net["a"](x).sum().backward()
    res["local_after_no_sync"] = net["a"].weight.grad.tolist()
    net["a"](x).sum().backward()
    res["synced_after_accumulation"] = net["a"].weight.grad.tolist()
    return res


@case
def syncbn_uneven(rank, world, args):
    """SyncBatchNorm with per-rank batches 3 and 5 against BatchNorm2d on all 8 samples."""
    rng = np.random.default_rng(3)
    xa = rng.normal(size=(8, 4, 3, 3)).astype(np.float32) * 2 + 1
    wa = rng.normal(size=(8, 4, 3, 3)).astype(np.float32)
    lo, hi = (0, 3) if rank == 0 else (3, 8)

    def run(norm, a, b):
        engine.manual_seed(0)
        x = engine.tensor(xa[a:b], requires_grad=True)
        out = norm(x)
        (out * engine.tensor(wa[a:b])).sum().backward()
        return out, x, norm

    out, x, sync = run(nn.SyncBatchNorm(4), lo, hi)
    for p in sync.parameters():  # the loss is a sum over samples: parameter grads add up
        dist.all_reduce(p.grad)
    res = {}
    if rank == 0:
        ref_out, ref_x, ref = run(nn.BatchNorm2d(4), 0, 8)
        res = {
            "out": float(np.abs(out.numpy() - ref_out.numpy()[lo:hi]).max()),
            "grad_x": float(np.abs(x.grad.numpy() - ref_x.grad.numpy()[lo:hi]).max()),
            "grad_w": float(np.abs(sync.weight.grad.numpy() - ref.weight.grad.numpy()).max()),
            "grad_b": float(np.abs(sync.bias.grad.numpy() - ref.bias.grad.numpy()).max()),
            "running_var": float(np.abs(sync.running_var.numpy() - ref.running_var.numpy()).max()),
        }
    return res


def _critics(conv: bool):
    """A float64 critic with BatchNorm (a conv one for (N, C, H, W) inputs); seeded."""
    engine.manual_seed(0)
    if conv:
        net = nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1),
            nn.BatchNorm2d(3),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(3 * 4 * 4, 1),
        )
    else:
        net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    return net.double()


def _penalty_grads(critic, real, fake, alpha) -> dict:
    """The parameter gradients of a WGAN-GP critic loss, then of an R1 loss (fresh .grad each)."""
    from regularizers import gradient_penalty, r1_penalty

    module = getattr(critic, "module", critic)
    out = {}
    for name in ("wgan-gp", "r1"):
        module.zero_grad()
        if name == "wgan-gp":
            loss = critic(fake).mean() - critic(real).mean()
            loss = loss + gradient_penalty(critic, real, fake, alpha=alpha)
        else:
            loss = critic(real).mean() + r1_penalty(critic, real)
        loss.backward()
        out[name] = _flat_grads(module)
    return out


def _input_penalty(critic, x):
    """||d sum critic(x) / dx||^2 summed over this rank's samples: its x-gradient is a
    Hessian-vector product of the critic (SyncBatchNorm's recorded backward differentiated)."""
    (g,) = engine.grad(critic(x).sum(), (x,), create_graph=True)
    return (g * g).sum()


def _global(value: float) -> float:
    t = engine.tensor(np.array([value], np.float64))
    dist.all_reduce(t)
    return float(t.numpy()[0])


@case
def syncbn_double(rank, world, args):
    """WGAN-GP and R1 through a SyncBatchNorm critic (double backward) on 2 ranks x 4 samples,
    float64, against BatchNorm on the global 8 samples in one process; central differences of
    the all-ranks penalty in the inputs (the recorded backward's x-dependence crosses ranks);
    and the collectives a plain step and a penalty step make. args: [device] ("cpu", or
    "cuda": the rank's GPU, against one cpu process)."""
    dev = dist.local_device() if args and args[0] == "cuda" else "cpu"
    res = {"device": str(engine.zeros(1, device=dev).device)}
    rng = np.random.default_rng(7)
    b, lo, hi = 4, rank * 4, (rank + 1) * 4
    for conv in (False, True):
        shape = (b * world, 2, 4, 4) if conv else (b * world, 6)
        real_all = rng.normal(size=shape) * 1.5 + 0.5
        fake_all = rng.normal(size=shape)
        alpha_all = rng.uniform(size=b * world)
        ddp = nn.parallel.DistributedDataParallel(
            nn.SyncBatchNorm.convert_sync_batchnorm(_critics(conv)).to(dev), broadcast_buffers=False
        )
        real = engine.tensor(real_all[lo:hi], device=dev)
        fake = engine.tensor(fake_all[lo:hi], device=dev)
        got = _penalty_grads(ddp, real, fake, engine.tensor(alpha_all[lo:hi], device=dev))
        key = "conv" if conv else "linear"
        res[key] = {"identical": all(_same_everywhere(g) for g in got.values())}
        if rank == 0:
            ref = _penalty_grads(
                _critics(conv),
                engine.tensor(real_all),
                engine.tensor(fake_all),
                engine.tensor(alpha_all),
            )
            res[key].update(
                {k: float(np.abs(got[k] - ref[k]).max()) for k in got}
                | {k + "_scale": float(np.abs(ref[k]).max()) for k in got}
            )
        # Central differences of sum over ranks of _input_penalty in a few inputs of each
        # rank; every rank evaluates every perturbation (a collective), the owner moves x.
        x = engine.tensor(real_all[lo:hi], requires_grad=True, device=dev)
        _input_penalty(ddp, x).backward()
        analytic = x.grad.cpu().numpy().ravel()
        picks, errors, eps = [(0, 0), (0, 5), (1, 3), (1, 11)], [], 1e-6
        for owner, j in picks:
            values = []
            for step in (eps, -eps):
                xs = real_all[lo:hi].copy().ravel()
                if rank == owner:
                    xs[j] += step
                xt = engine.tensor(xs.reshape(x.shape), requires_grad=True, device=dev)
                values.append(_global(float(_input_penalty(ddp, xt).item())))
            numeric = (values[0] - values[1]) / (2 * eps)
            mine = _global(analytic[j] if rank == owner else 0.0)
            errors.append(abs(numeric - mine) / max(1.0, abs(numeric)))
        res[key]["fd_rel_err"] = max(errors)
        res[key]["fd_grad_scale"] = float(np.abs(analytic).max())
    # Collectives: one SyncBatchNorm and one DDP bucket. A plain step: the forward's statistics,
    # the backward's gradient sums, the bucket (3). A penalty step adds the recorded backward's
    # two sums and their adjoints in the second backward.
    group = dist._group
    ddp = nn.parallel.DistributedDataParallel(
        nn.SyncBatchNorm.convert_sync_batchnorm(_critics(False)).to(dev), broadcast_buffers=False
    )
    x = engine.tensor(rng.normal(size=(b, 6)), device=dev)
    before = group.calls
    ddp(x).mean().backward()
    res["plain_step_collectives"] = group.calls - before
    before = group.calls
    from regularizers import r1_penalty

    r1_penalty(ddp, x).backward()
    res["r1_step_collectives"] = group.calls - before
    return res


@case
def gan_gp_syncbn(rank, world, args):
    """The GAN Trainer with WGAN-GP and a BatchNorm critic on ranks: the Trainer converts it to
    SyncBatchNorm and the penalty's double backward runs through it; replicas stay equal."""
    from engine.data import DataLoader, TensorDataset
    from generative import GAN

    engine.manual_seed(0)
    g = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 6))
    d = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    gan = GAN(g, d, latent_dim=4, loss="wgan-gp", device="cpu", seed=0, progress=False)
    gan.preview = lambda: None
    rng = np.random.default_rng(2)
    data = TensorDataset(rng.normal(size=(32, 6)).astype(np.float32))
    gan.fit(DataLoader(data, 8, shuffle=False), 2)
    return {
        "kinds": [type(net[1]).__name__ for net in (gan.generator, gan.discriminator)],
        "identical": _replicas_identical(gan.generator) and _replicas_identical(gan.discriminator),
        "finite": all(np.isfinite(v) for v in gan.history["loss_d"] + gan.history["loss_g"]),
        "steps": gan.global_step,
    }


def _flat_grads(module) -> np.ndarray:
    return np.concatenate([p.grad.cpu().numpy().ravel() for p in module.parameters()])


# Generative steps ----------------------------------------------------------------------------


def _gan():
    engine.manual_seed(0)
    g = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 6), nn.Tanh())
    d = nn.Sequential(nn.Linear(6, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    return g, d


def _gan_steps(g, d, gd, dd, real, z, lo, hi):
    opt_g = optim.Adam(gd.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = optim.Adam(dd.parameters(), lr=2e-3, betas=(0.5, 0.999))
    bce = F.binary_cross_entropy_with_logits
    for s in range(len(real)):
        r, zz = engine.tensor(real[s, lo:hi]), engine.tensor(z[s, lo:hi])
        fake = gd(zz)
        opt_d.zero_grad()
        d_real, d_fake = dd(r), dd(fake.detach())
        loss_d = bce(d_real, engine.ones_like(d_real)) + bce(d_fake, engine.zeros_like(d_fake))
        loss_d.backward()  # reaches D only: G's DDP sees no gradient and does nothing
        opt_d.step()
        opt_g.zero_grad()
        d_fake = dd(fake)
        bce(d_fake, engine.ones_like(d_fake)).backward()  # through D into G: both reduce
        opt_g.step()


@case
def gan(rank, world, args):
    steps, b = int(args[0]), 4
    rng = np.random.default_rng(5)
    real = rng.normal(size=(steps, b * world, 6)).astype(np.float32)
    z = rng.normal(size=(steps, b * world, 4)).astype(np.float32)  # drawn per rank in real use
    g, d = _gan()
    gd = nn.parallel.DistributedDataParallel(g)
    dd = nn.parallel.DistributedDataParallel(d)
    _gan_steps(g, d, gd, dd, real, z, rank * b, (rank + 1) * b)
    res = {"identical": _replicas_identical(g) and _replicas_identical(d)}
    if rank == 0:
        rg, rd = _gan()
        _gan_steps(rg, rd, rg, rd, real, z, 0, b * world)
        res["max_diff"] = float(
            max(np.abs(_flat(g) - _flat(rg)).max(), np.abs(_flat(d) - _flat(rd)).max())
        )
    return res


def _dcgan(sync: bool):
    """The benchmark's DCGAN (benchmarks/workloads.py), small: a generator with two BatchNorms
    (six buffers, two of them int64 num_batches_tracked), a critic without."""
    engine.manual_seed(0)
    g = nn.Sequential(
        nn.Linear(8, 4 * 4 * 4), nn.Unflatten(1, (4, 4, 4)), nn.BatchNorm2d(4), nn.ReLU(),
        nn.ConvTranspose2d(4, 3, 4, 2, 1), nn.BatchNorm2d(3), nn.ReLU(),
        nn.ConvTranspose2d(3, 1, 4, 2, 1), nn.Tanh(),
    )  # fmt: skip
    d = nn.Sequential(
        nn.Conv2d(1, 4, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(4, 8, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 1),
    )  # fmt: skip
    return (nn.SyncBatchNorm.convert_sync_batchnorm(g) if sync else g), d


def _dcgan_step(gd, dd, opts, real, z):
    """The benchmark's step: one critic forward on real and fake, then the generator's."""
    bce = F.binary_cross_entropy_with_logits
    n, dev = real.shape[0], real.device
    labels = engine.tensor(np.repeat([[1.0], [0.0]], n, 0).astype(np.float32), device=dev)
    fake = gd(z)
    opts[1].zero_grad()
    bce(dd(engine.cat([real, fake.detach()])), labels).backward()
    opts[1].step()
    opts[0].zero_grad()
    bce(dd(fake), engine.ones(n, 1, device=dev)).backward()
    opts[0].step()


_BIG = 2**60 + 3  # an int64 that float64 cannot hold: a buffer passed as floats would change


@case
def dcgan_collectives(rank, world, args):
    """The DCGAN step on ranks, plain BatchNorm and SyncBatchNorm: the collectives of each step;
    rank 1's buffers made to differ after DDP is built (only the forward's broadcast can make
    them rank 0's again: num_batches_tracked = _BIG + 1000 rank, exact after the steps only if
    int64 travels as int64); with SyncBatchNorm the buffers bit-equal on every rank after the
    steps and the run equal to one process with the whole batch. args: [device]."""
    dev = dist.local_device() if args and args[0] == "cuda" else "cpu"
    steps, b = 3, 4
    rng = np.random.default_rng(11)
    real_all = rng.uniform(-1, 1, size=(steps, b * world, 1, 16, 16)).astype(np.float32)
    z_all = rng.normal(size=(steps, b * world, 8)).astype(np.float32)
    group, res = dist._group, {}
    for sync in (False, True):
        g, d = _dcgan(sync)
        g, d = g.to(dev), d.to(dev)
        gd = nn.parallel.DistributedDataParallel(g)
        dd = nn.parallel.DistributedDataParallel(d)
        opts = [optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (gd, dd)]
        for bn in (m for m in g.modules() if hasattr(m, "running_mean")):
            bn.running_mean.array[...] += rank
            bn.running_var.array[...] *= 1 + rank
            bn.num_batches_tracked.array[...] = _BIG + 1000 * rank
        counts = []
        for s in range(steps):
            real = engine.tensor(real_all[s, rank * b : (rank + 1) * b], device=dev)
            before = group.calls
            _dcgan_step(
                gd, dd, opts, real, engine.tensor(z_all[s, rank * b : (rank + 1) * b], device=dev)
            )
            counts.append(group.calls - before)
        g, d = g.to("cpu"), d.to("cpu")
        bufs = [t.numpy() for t in g.buffers()]
        key = "sync" if sync else "bn"
        res[key] = {
            "step_collectives": counts,
            "num_batches_tracked": [int(t) for t in bufs if t.dtype == np.int64],
            "buffers_identical": _same_everywhere(
                np.concatenate([t.ravel().view(np.uint8) for t in bufs])
            ),
            "identical": _replicas_identical(g) and _replicas_identical(d),
        }
        if sync and rank == 0:
            rg, rd = _dcgan(False)
            ropts = [optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (rg, rd)]
            for s in range(steps):
                _dcgan_step(rg, rd, ropts, engine.tensor(real_all[s]), engine.tensor(z_all[s]))
            ours = np.concatenate(
                [_flat(g), _flat(d)] + [t.ravel() for t in bufs if t.dtype != np.int64]
            )
            ref = [t.numpy() for t in rg.buffers()]
            ref = np.concatenate(
                [_flat(rg), _flat(rd)] + [t.ravel() for t in ref if t.dtype != np.int64]
            )
            res[key]["max_diff"] = float(np.abs(ours - ref).max())
    return res


def _vae():
    engine.manual_seed(0)
    enc = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))  # (mu, logvar) x 2
    dec = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 8))
    return nn.ModuleDict({"enc": enc, "dec": dec})


def _vae_steps(vae, model, data, eps, lo, hi):
    opt = optim.Adam(model.parameters(), lr=1e-2)
    for s in range(len(data)):
        x = engine.tensor(data[s, lo:hi])
        h = vae["enc"](x)
        mu, logvar = h[:, :2], h[:, 2:]
        zz = mu + engine.exp(0.5 * logvar) * engine.tensor(eps[s, lo:hi])
        rec = F.mse_loss(vae["dec"](zz), x, reduction="sum") / (hi - lo)
        kl = -0.5 * (1 + logvar - mu * mu - engine.exp(logvar)).sum() / (hi - lo)
        opt.zero_grad()
        (rec + kl).backward()
        opt.step()


@case
def vae(rank, world, args):
    steps, b = int(args[0]), 4
    rng = np.random.default_rng(6)
    data = rng.normal(size=(steps, b * world, 8)).astype(np.float32)
    eps = rng.normal(size=(steps, b * world, 2)).astype(np.float32)
    v = _vae()
    ddp = nn.parallel.DistributedDataParallel(v)
    _vae_steps(v, ddp, data, eps, rank * b, (rank + 1) * b)
    res = {"identical": _replicas_identical(v)}
    if rank == 0:
        ref = _vae()
        _vae_steps(ref, ref, data, eps, 0, b * world)
        res["max_diff"] = float(np.abs(_flat(v) - _flat(ref)).max())
    return res


# The cuda path (CuPy stand-in in CI: NCCL over MPI, or host-staged MPI) -----------------------


@case
def cuda(rank, world, args):
    """Collectives and 20 DDP steps on cuda tensors; the reference is one process on the cpu."""
    dev = dist.local_device()
    t = engine.tensor(np.arange(4.0, dtype=np.float32) * (rank + 1), device=dev)
    dist.all_reduce(t)
    avg = engine.tensor(np.full(3, rank + 1.0, np.float32), device=dev)
    dist.all_reduce(avg, op=dist.ReduceOp.AVG)
    b = engine.tensor(np.full(3, 10.0 * rank, np.float32), device=dev)
    dist.broadcast(b, world - 1)
    out = [engine.zeros(2, device=dev) for _ in range(world)]
    dist.all_gather(out, engine.tensor([rank, rank + 0.5], device=dev))
    steps, bsz = 20, 4
    x, y = _data(steps, bsz * world)
    model = _mlp("sync").to(dev)
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.001)
    opt = _OPTS["momentum"](ddp.parameters())
    for s in range(steps):
        opt.zero_grad()
        lo, hi = rank * bsz, (rank + 1) * bsz
        xb = engine.tensor(x[s, lo:hi], device=dev)
        F.cross_entropy(ddp(xb), engine.tensor(y[s, lo:hi], device=dev)).backward()
        opt.step()
    res = {
        "coalesced": _coalesced(rank, world, dev),
        "backend": dist.get_backend(),
        "device": str(t.device),
        "sum": t.tolist(),
        "avg": avg.tolist(),
        "bcast": b.tolist(),
        "gather": [o.tolist() for o in out],
        "identical": _replicas_identical(model.to("cpu")),
    }
    if rank == 0:
        ref = _mlp("bn")
        _train(ref, _OPTS["momentum"](ref.parameters()), x, y, 0, bsz * world)
        res["max_diff"] = float(np.abs(_flat(model) - _flat(ref)).max())
    return res


# The Trainer on ranks --------------------------------------------------------------------------


def _trainer_run(out, epochs, batch, resume_from=None, callbacks=(), log_every=20, noise=0.01):
    from engine.data import DataLoader, TensorDataset
    from generative.trainer import Trainer

    class MLPTrainer(Trainer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
            self.networks = {"net": self.net}
            self.optimizers = {"sgd": optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9)}

        def train_step(self, batch):
            x, y = batch
            loss = F.cross_entropy(self.net(x + noise * engine.randn_like(x)), y)
            self.optimizers["sgd"].zero_grad()
            self.backward(loss)
            self.step(self.optimizers["sgd"])
            return {"loss": loss}

        def preview(self):
            return None

    rng = np.random.default_rng(4)
    data = TensorDataset(rng.normal(size=(64, 6)).astype(np.float32), rng.integers(0, 3, 64))
    t = MLPTrainer(device="cpu", seed=0, out_dir=out, progress=False, callbacks=callbacks)
    t.log_every = log_every
    loader = DataLoader(data, batch, shuffle=False)  # (draws its seed: before the restore)
    if resume_from:
        t.load_checkpoint(resume_from)
    t.fit(loader, epochs)
    return t


@case
def trainer(rank, world, args):
    """2 ranks x 4 == 1 process x 8 without noise; rank 0 alone writes; resume is exact."""
    import os.path as osp

    out = args[0]
    mine = osp.join(out, f"run_rank{rank}")
    t = _trainer_run(mine, 2, 8)
    res = {"wrote": osp.exists(mine), "identical": _replicas_identical(t.net)}
    part = osp.join(out, "part")
    _trainer_run(part, 1, 8)  # rank 0 alone writes part/checkpoint.npz
    dist.barrier()
    # Rank 0 reads the checkpoint and broadcasts it: rank 1's path (on "another machine") does
    # not exist, and the resumed run still equals the uninterrupted one on every rank.
    ckpt = osp.join(part, "checkpoint.npz") if rank == 0 else osp.join(out, "absent", "c.npz")
    resumed = _trainer_run(None, 2, 8, resume_from=ckpt)
    res["resume_diff"] = float(np.abs(_flat(resumed.net) - _flat(t.net)).max())
    res["resume_momentum_diff"] = float(
        max(np.abs(a - b).max() for a, b in zip(_momenta(resumed), _momenta(t), strict=True))
    )
    res["resume_history"] = resumed.history["loss"] == t.history["loss"]
    res["resume_steps"] = [resumed.epoch, resumed.global_step, t.epoch, t.global_step]
    return res


class _Stop(Exception):
    pass


@case
def trainer_midepoch(rank, world, args):
    """A checkpoint written mid-epoch (every rank calling save_checkpoint from a callback at
    global step 11, epoch 2 of 8 steps each, then the job stops): resumed on 2 ranks, it ends
    where the uninterrupted run does. The model draws noise every step, so each rank's own
    random state must come back; with rank 0's state everywhere (the checkpoint's rank_rng
    removed) the resumed run differs."""
    import os.path as osp

    import generative.callbacks

    out = args[0]
    ckpt = osp.join(out, "mid.npz")

    class SaveAndStop(generative.callbacks.Callback):
        def on_log(self, trainer, values):
            if trainer.global_step == 11:
                trainer.save_checkpoint(ckpt)  # the loader: the one fit runs
                raise _Stop

    whole = _trainer_run(None, 3, 8)
    try:
        _trainer_run(None, 3, 8, callbacks=[SaveAndStop()], log_every=1)
    except _Stop:
        pass
    dist.barrier()
    resumed = _trainer_run(None, 3, 8, resume_from=ckpt)
    res = {
        "diff": float(np.abs(_flat(resumed.net) - _flat(whole.net)).max()),
        "steps": [resumed.epoch, resumed.global_step, whole.epoch, whole.global_step],
        "identical": _replicas_identical(resumed.net),
    }
    state = engine.load(ckpt)
    res["rank_rng"] = len(state.get("rank_rng") or [])
    if rank == 0:
        del state["rank_rng"]
        engine.save(state, osp.join(out, "one_rng.npz"))
    dist.barrier()
    one = _trainer_run(None, 3, 8, resume_from=osp.join(out, "one_rng.npz"))
    res["diff_one_rng"] = float(np.abs(_flat(one.net) - _flat(whole.net)).max())
    return res


class SaveAndStop(Callback):
    """Every rank saves a checkpoint at global step `step`, then the run stops."""

    def __init__(self, path, step: int = 11):
        self.path, self.step = path, step

    def on_log(self, trainer, values):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            raise _Stop


def stopped_run(path, noise: float = 0.01) -> None:
    """3 epochs of 8 steps that save at step 11 (3 steps into epoch 2) and stop."""
    try:
        _trainer_run(None, 3, 8, callbacks=[SaveAndStop(path)], log_every=1, noise=noise)
    except _Stop:
        pass


def restart_copy(path, out, world: int) -> None:
    """`path` (a mid-epoch checkpoint) as if saved at its epoch's start on `world` ranks: what
    a resume on another rank count must run."""
    state = engine.load(path)
    state["loader"]["batches_done"] = 0
    state["world_size"] = world
    engine.save(state, out)


def resume_warnings(path, noise: float = 0.0):
    """(trainer resumed from `path` up to 3 epochs, the warning lines it gave)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = _trainer_run(None, 3, 8, resume_from=path, noise=noise)
    return t, [str(w.message) for w in caught]


@case
def trainer_recount(rank, world, args):
    """Another rank count than the checkpoint's: "save" writes, on these ranks, a mid-epoch
    checkpoint (step 11) and an epoch-end one (epoch 1), no noise, for one process to resume;
    "resume" resumes the one-process files out/mid.npz (its epoch restarts: warned once, by
    rank 0), out/mid_start.npz (restart_copy of it) and out/end/checkpoint.npz."""
    import os.path as osp

    out, what = args
    if what == "save":
        stopped_run(osp.join(out, "mid.npz"), noise=0.0)
        dist.barrier()
        _trainer_run(osp.join(out, "end"), 1, 8, noise=0.0)
        return {}
    t, warned = resume_warnings(osp.join(out, "mid.npz"))
    ref, warned_ref = resume_warnings(osp.join(out, "mid_start.npz"))
    end, warned_end = resume_warnings(osp.join(out, "end", "checkpoint.npz"))
    return {
        "warned": warned + warned_ref + warned_end,
        "steps": [t.epoch, t.global_step, end.epoch, end.global_step],
        "restart_diff": float(np.abs(_flat(t.net) - _flat(ref.net)).max()),
        "end_net": _flat(end.net).tolist(),
        "identical": _replicas_identical(t.net) and _replicas_identical(end.net),
    }


@case
def trainer_rank0_save(rank, world, args):
    """`if trainer.is_main_process: trainer.save_checkpoint(...)` (PyTorch's idiom): at an
    epoch's end and after fit rank 0 writes the file alone; "midway" (a callback at step 5 of
    8) needs every rank, and rank 0 stops the job with a clear error instead of hanging."""
    import os.path as osp

    import generative.callbacks

    out, when = args
    step = 5 if when == "midway" else 8

    class SaveOnRank0(generative.callbacks.Callback):
        def on_log(self, trainer, values):
            if trainer.global_step == step and trainer.is_main_process:
                trainer.save_checkpoint(osp.join(out, "step.npz"))

    t = _trainer_run(None, 2, 8, callbacks=[SaveOnRank0()], log_every=1)
    if t.is_main_process:
        t.save_checkpoint(osp.join(out, "after.npz"))
    dist.barrier()
    return {"files": sorted(f for f in os.listdir(out) if f.endswith(".npz"))}


def _momenta(trainer) -> list:
    """The optimizer's per-parameter momentum buffers, in parameter order."""
    state = trainer.optimizers["sgd"].state_dict()["state"]
    return [np.asarray(state[k]["momentum_buffer"]) for k in sorted(state)]


def bn_trainer_run(out, batch: int, sync: bool = True):
    """A BatchNorm MLP classifier on the Trainer, no noise, no shuffling: N ranks x batch/N
    (the loader's batch is the global one) must train like one process x batch."""
    from engine.data import DataLoader, TensorDataset
    from generative.trainer import Trainer

    class BNTrainer(Trainer):
        sync_batchnorm = sync

        def __init__(self, **kw):
            super().__init__(**kw)
            self.net = nn.Sequential(
                nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3)
            )
            self.networks = {"net": self.net}
            self.optimizers = {"sgd": optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9)}

        def train_step(self, batch):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.optimizers["sgd"].zero_grad()
            self.backward(loss)
            self.step(self.optimizers["sgd"])
            return {"loss": loss}

        def preview(self):
            return None

    rng = np.random.default_rng(5)
    x = (rng.normal(size=(128, 6)) * [1, 2, 3, 0.5, 1, 4] + 1).astype(np.float32)
    data = TensorDataset(x, rng.integers(0, 3, 128))
    t = BNTrainer(device="cpu", seed=0, out_dir=out, progress=False)
    t.fit(DataLoader(data, batch, shuffle=False), 3)
    return t


def bn_state(trainer) -> list:
    """Parameters, then the BatchNorm's running statistics, as flat lists."""
    bn = trainer.net[1]
    return [
        _flat(trainer.net).tolist(),
        bn.running_mean.numpy().tolist(),
        bn.running_var.numpy().tolist(),
    ]


@case
def trainer_bn(rank, world, args):
    """The Trainer on ranks converts BatchNorm to SyncBatchNorm (or not, with sync_batchnorm =
    False); the test compares with the one-process run of the same global batch."""
    sync = args[0] == "sync"
    t = bn_trainer_run(None, 8, sync=sync)
    return {
        "state": bn_state(t),
        "kind": type(t.net[1]).__name__,
        "identical": _replicas_identical(t.net),
    }


# Evaluation, failures ------------------------------------------------------------------------


@case
def evaluate(rank, world, args):
    engine.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3))
    rng = np.random.default_rng(2)
    ds = engine.data.TensorDataset(
        rng.normal(size=(37, 6)).astype(np.float32), rng.integers(0, 3, size=37)
    )
    got = nn.parallel.distributed_evaluate(model, ds, batch_size=5)
    x, y = ds.tensors
    logits = model(x)
    ref = {
        "loss": float(F.cross_entropy(logits, y).item()),
        "accuracy": float((logits.argmax(1) == y).float().mean().item()),
        "count": 37,
    }
    return {"got": got, "ref": ref}


@case
def fail(rank, world, args):
    """Rank 1 raises (or exits) at step 3 while rank 0 goes on all-reducing; "both": every
    rank raises the same error at step 3 (rank 1 a little earlier than rank 0)."""
    t = engine.tensor(np.ones(4))
    for step in range(100):
        if args[0] == "both" and step == 3:
            time.sleep(0.2 * (1 - rank))
            raise ValueError(f"every rank fails at step 3 (this is rank {rank})")
        if rank == 1 and step == 3:
            if args[0] == "raise":
                raise ValueError("rank 1 fails at step 3")
            sys.exit(0)
        dist.all_reduce(t)
        time.sleep(0.01)
    return {}


def main() -> None:
    name, out = sys.argv[1], sys.argv[2]
    if os.environ.get("TENSORTAPE_TEST_SIM") == "1":  # the CuPy stand-in, as tests/conftest.py
        import cuda_sim

        cuda_sim.install()
    dist.init_process_group(os.environ.get("TENSORTAPE_TEST_BACKEND") or None)
    rank, world = dist.get_rank(), dist.get_world_size()
    takes_out = name in ("trainer", "trainer_midepoch", "trainer_rank0_save", "trainer_recount")
    result = CASES[name](rank, world, [out, *sys.argv[3:]] if takes_out else sys.argv[3:])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
