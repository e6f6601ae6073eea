"""The six reference training steps of issue 7, written once for both libraries.

Each workload is a builder `build(lib) -> step` where `lib` is a namespace holding either
tensortape's modules (`layers` as nn, `engine.functional` as F, `optimizers` as optim) or
PyTorch's: the model code is the same text for both, which is the port-by-imports promise.
`step()` runs one forward + backward + optimizer step on a fresh model built by `build`.

Precision (issue 14): `ours_lib(device, precision)` / `torch_lib(...)` with Lightning's words
"32", "16-mixed" (float16 autocast and a GradScaler) or "bf16-mixed" (bfloat16 autocast, no
scaler): the steps run their forward under `lib.autocast()` and their backward and optimizer
step through `lib.backward(loss)` / `lib.step(opt)` (the scaler's scale/step/update, or plain).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np

Step = Callable[[], None]
PRECISIONS = ("32", "16-mixed", "bf16-mixed")
_LOW = {"16-mixed": "float16", "bf16-mixed": "bfloat16"}


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    flops: float | None  # multiply-adds x 2 of one step's GEMMs (forward and backward)
    build: Callable[[SimpleNamespace], Step]


def _amp(lib_autocast, scaler, device: str, precision: str) -> dict:
    """autocast / backward / step for `precision`, PyTorch's recipe in either library."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    low = _LOW.get(precision)
    device_type = device.split(":")[0]

    def autocast():
        return lib_autocast(device_type, low) if low else contextlib.nullcontext()

    def backward(loss):
        (scaler.scale(loss) if scaler else loss).backward()

    def step(opt):
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()

    return {"autocast": autocast, "backward": backward, "step": step, "precision": precision}


def ours_lib(device: str, precision: str = "32") -> SimpleNamespace:
    import engine
    import engine.functional as F
    import layers
    import optimizers

    scaler = engine.amp.GradScaler(device.split(":")[0]) if precision == "16-mixed" else None
    amp = _amp(lambda t, d: engine.autocast(t, dtype=getattr(engine, d)), scaler, device, precision)
    return SimpleNamespace(
        **amp,
        name="ours",
        nn=layers,
        F=F,
        optim=optimizers,
        tensor=lambda a, **kw: engine.tensor(a, device=device, **kw),
        randn=lambda *shape: engine.randn(*shape, device=device),
        randn_like=engine.randn_like,
        device=device,
    )


def torch_lib(device: str, precision: str = "32") -> SimpleNamespace:
    import torch

    scaler = torch.amp.GradScaler(device.split(":")[0]) if precision == "16-mixed" else None
    amp = _amp(lambda t, d: torch.autocast(t, dtype=getattr(torch, d)), scaler, device, precision)
    return SimpleNamespace(
        **amp,
        name="torch",
        nn=torch.nn,
        F=torch.nn.functional,
        optim=torch.optim,
        tensor=lambda a, **kw: torch.tensor(a, device=device, **kw),
        randn=lambda *shape: torch.randn(*shape, device=device),
        randn_like=torch.randn_like,
        device=device,
    )


def _data(seed: int, *shapes_and_kinds) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for shape, kind in shapes_and_kinds:
        if kind == "normal":
            out.append(rng.standard_normal(shape).astype(np.float32))
        elif kind == "unit":
            out.append(rng.random(shape).astype(np.float32))
        else:  # class labels below `kind`
            out.append(rng.integers(0, kind, shape).astype(np.int64))
    return out


def _gemm(m: int, k: int, n: int) -> float:
    return 2.0 * m * k * n


def _conv(n: int, cin: int, cout: int, hout: int, wout: int, k: int) -> float:
    return 2.0 * n * cout * hout * wout * cin * k * k


def _classifier_step(lib, model, opt, x, y) -> Step:
    """One cross-entropy training step of a classifier on the fixed batch (x, y)."""

    def step():
        opt.zero_grad()
        with lib.autocast():
            loss = lib.F.cross_entropy(model(x), y)
        lib.backward(loss)
        lib.step(opt)

    return step


# 1. MLP ------------------------------------------------------------------------------------
def build_mlp(lib) -> Step:
    nn = lib.nn
    model = nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    ).to(lib.device)
    opt = lib.optim.Adam(model.parameters(), lr=1e-3)
    xa, ya = _data(1, ((128, 784), "normal"), ((128,), 10))
    return _classifier_step(lib, model, opt, lib.tensor(xa), lib.tensor(ya))


_MLP_FWD = _gemm(128, 784, 256) + _gemm(128, 256, 256) + _gemm(128, 256, 10)
MLP_FLOPS = 3 * _MLP_FWD - _gemm(128, 784, 256)  # no gradient for the input


# 2. CNN ------------------------------------------------------------------------------------
def build_cnn(lib) -> Step:
    nn = lib.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    ).to(lib.device)  # fmt: skip
    opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    xa, ya = _data(2, ((64, 1, 28, 28), "normal"), ((64,), 10))
    return _classifier_step(lib, model, opt, lib.tensor(xa), lib.tensor(ya))


_CNN_CONV1 = _conv(64, 1, 32, 28, 28, 3)
_CNN_FWD = _CNN_CONV1 + _conv(64, 32, 64, 14, 14, 3) + _gemm(64, 3136, 128) + _gemm(64, 128, 10)
CNN_FLOPS = 3 * _CNN_FWD - _CNN_CONV1


# 3. conv2d alone ---------------------------------------------------------------------------
def build_conv(lib) -> Step:
    xa, wa, ga = _data(3, ((32, 64, 32, 32), "normal"), ((64, 64, 3, 3), "normal"),
                       ((32, 64, 32, 32), "normal"))  # fmt: skip
    x = lib.tensor(xa, requires_grad=True)
    w = lib.tensor(wa * 0.05, requires_grad=True)
    b = lib.tensor(np.zeros(64, np.float32), requires_grad=True)
    gy = lib.tensor(ga)

    def step():
        x.grad = w.grad = b.grad = None
        with lib.autocast():
            y = lib.F.conv2d(x, w, b, padding=1)
        y.backward(gy.to(y.dtype))

    return step


CONV_FLOPS = 3 * _conv(32, 64, 64, 32, 32, 3)


# 4. max_pool2d alone -----------------------------------------------------------------------
def build_maxpool(lib) -> Step:
    xa, ga = _data(4, ((32, 64, 32, 32), "normal"), ((32, 64, 16, 16), "normal"))
    x = lib.tensor(xa, requires_grad=True)
    gy = lib.tensor(ga)

    def step():  # max_pool2d is on no autocast list: float32 under every precision
        x.grad = None
        with lib.autocast():
            y = lib.F.max_pool2d(x, 2)
        y.backward(gy)

    return step


# 5. DCGAN ----------------------------------------------------------------------------------
def _dcgan_models(nn):
    g = nn.Sequential(
        nn.Linear(64, 6272), nn.Unflatten(1, (128, 7, 7)), nn.BatchNorm2d(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(),
    )  # fmt: skip
    d = nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(6272, 1),
    )  # fmt: skip
    return g, d


def build_dcgan(lib) -> Step:
    g, d = _dcgan_models(lib.nn)
    g, d = g.to(lib.device), d.to(lib.device)
    opt_g = lib.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = lib.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real_a, z_a = _data(5, ((64, 1, 28, 28), "unit"), ((64, 64), "normal"))
    real, z = lib.tensor(real_a * 2 - 1), lib.tensor(z_a)
    ones = lib.tensor(np.ones((64, 1), np.float32))
    zeros = lib.tensor(np.zeros((64, 1), np.float32))
    bce = lib.F.binary_cross_entropy_with_logits

    def step():
        with lib.autocast():
            fake = g(z)
        opt_d.zero_grad()
        with lib.autocast():
            loss_d = bce(d(real), ones) + bce(d(fake.detach()), zeros)
        lib.backward(loss_d)
        lib.step(opt_d)
        opt_g.zero_grad()
        with lib.autocast():
            loss_g = bce(d(fake), ones)
        lib.backward(loss_g)
        lib.step(opt_g)

    return step


_G_FWD = _gemm(64, 64, 6272) + _conv(64, 64, 128, 7, 7, 4) + _conv(64, 1, 64, 14, 14, 4)
_D_FWD = _conv(64, 1, 64, 14, 14, 4) + _conv(64, 64, 128, 7, 7, 4) + _gemm(64, 6272, 1)
DCGAN_FLOPS = 3 * _G_FWD + 3 * 3 * _D_FWD  # three passes through D, each forward + backward


# 6. VAE ------------------------------------------------------------------------------------
def build_vae(lib) -> Step:
    nn, F = lib.nn, lib.F
    enc = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40)).to(lib.device)
    dec = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784)).to(lib.device)
    opt = lib.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)
    (xa,) = _data(6, ((128, 784), "unit"))
    x = lib.tensor(xa)

    def step():
        opt.zero_grad()
        with lib.autocast():
            h = enc(x)
            mu, logvar = h[:, :20], h[:, 20:]
            z = mu + (0.5 * logvar).exp() * lib.randn_like(mu)
            rec = F.binary_cross_entropy_with_logits(dec(z), x, reduction="sum")
            kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum()
        lib.backward(rec + kl)
        lib.step(opt)

    return step


_VAE_FWD = _gemm(128, 784, 400) + _gemm(128, 400, 40) + _gemm(128, 20, 400) + _gemm(128, 400, 784)
VAE_FLOPS = 3 * _VAE_FWD - _gemm(128, 784, 400)


WORKLOADS = [
    Workload("mlp", "MLP 784-256-256-10 Adam b128", MLP_FLOPS, build_mlp),
    Workload("cnn", "CNN 2conv+2fc Nesterov b64", CNN_FLOPS, build_cnn),
    Workload("conv2d", "conv 32x64x32x32 3x3 fwd+bwd", CONV_FLOPS, build_conv),
    Workload("maxpool", "maxpool 2x2 same input fwd+bwd", None, build_maxpool),
    Workload("dcgan", "DCGAN D+G step b64 Adam", DCGAN_FLOPS, build_dcgan),
    Workload("vae", "VAE 784-400-20 step b128 Adam", VAE_FLOPS, build_vae),
]
