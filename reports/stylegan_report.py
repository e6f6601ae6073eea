"""Train the default StyleGAN recipe on the embedded digits and report the targets.

    python reports/stylegan_report.py [--device cpu] [--seed 0] [--torch]

Targets (issue 5): the StyleGAN covers >= 9 classes (share >= 2% among 1,000 samples, by the
judge), and style mixing keeps the coarse structure of one latent and the fine detail of another.
The second is shown by the grids and measured with the judge: over pairs of latents whose images
are judged to be different digits, how often the mix is judged to be the source's digit (the
latent whose w fills the chosen layers) and how often the destination's. Writes into docs/img/:
stylegan_samples.png, stylegan_mixing.png (coarse | middle | fine grids side by side: the
destinations along the top, the sources down the left) and stylegan_truncation.png (rows
psi = 1, 0.7, 0.4, 0 for the same latents). `--torch` also trains the same recipe in PyTorch (the
prototype it was tuned with), judged by the same judge.
"""

from __future__ import annotations

import os

# Tiny matrices: one BLAS thread is fastest, and the CPU is often shared.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy  # noqa: E402

import engine  # noqa: E402
from dataio.images import save_grid  # noqa: E402
from engine.data import DataLoader, load_digits  # noqa: E402
from generative.judge import load_judge  # noqa: E402
from generative.stylegan import RECIPES, build_stylegan  # noqa: E402

from _common import parse, parser, real_row, torch_prototype, write_json  # noqa: E402

N_SAMPLES = 1000
N_PAIRS = 500
GROUPS = ("coarse", "middle", "fine")


def mixing_agreement(judge, src, dst, mixed) -> dict:
    """Over pairs judged to be different digits: the share of mixes judged as the source's
    digit and as the destination's. src, dst, mixed: image batches of one pair per row."""
    ps, pd, pm = judge.predict(src), judge.predict(dst), judge.predict(mixed)
    diff = ps != pd
    return {
        "pairs": int(diff.sum()),
        "as_source": float((pm[diff] == ps[diff]).mean()),
        "as_destination": float((pm[diff] == pd[diff]).mean()),
    }


def run_ours(train, judge, args) -> dict:
    recipe = RECIPES["digits"]
    sg = build_stylegan("digits", device=args.device, seed=args.seed, progress=not args.quiet)
    loader = DataLoader(train, recipe["batch_size"], shuffle=True, drop_last=True, seed=args.seed)
    start, cpu = time.perf_counter(), time.process_time()
    sg.fit(loader, args.epochs or recipe["epochs"])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu

    engine.manual_seed(args.seed + 1)
    row = {
        "model": "StyleGAN (ours)",
        "device": str(sg.device),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        **judge.report(sg.sample(N_SAMPLES)),
    }
    row["truncated_0.7"] = judge.report(sg.sample(N_SAMPLES, truncation_psi=0.7))

    z_src, z_dst = sg.noise(N_PAIRS), sg.noise(N_PAIRS)
    src, dst = sg.generate(z_src, noise_mode="const"), sg.generate(z_dst, noise_mode="const")
    ws_src, ws_dst = sg.mapped(z_src), sg.mapped(z_dst)
    row["mixing"] = {}
    for group in GROUPS:  # what sg.mix does, for one pair per row instead of the full grid
        mask = numpy.zeros((1, sg.num_ws, 1), dtype=bool)
        mask[0, sg.layer_indices(group)] = True
        ws = engine.where(engine.tensor(mask, device=sg.device), ws_src, ws_dst)
        row["mixing"][group] = mixing_agreement(judge, src, dst, sg.synthesize(ws, "const"))
    write_pictures(sg, args.out)
    return row


def write_pictures(sg, out: Path) -> None:
    engine.manual_seed(7)
    save_grid(sg.sample(64, noise_mode="const").cpu().numpy(), out / "stylegan_samples.png", nrow=8)
    z_src, z_dst = sg.noise(6), sg.noise(6)
    grids = [sg.mixing_grid(z_src, z_dst, g) for g in GROUPS]
    # One picture: the three 7 x 7 grids side by side, a blank column between them.
    cells = [g.reshape(7, 7, 1, 8, 8) for g in grids]
    gap = engine.ones(7, 1, 1, 8, 8)
    wide = engine.cat([cells[0], gap, cells[1], gap, cells[2]], dim=1)
    save_grid(
        wide.reshape(-1, 1, 8, 8).cpu().numpy(), out / "stylegan_mixing.png", nrow=wide.shape[1]
    )
    z = sg.noise(10)
    rows = [sg.generate(z, truncation_psi=psi, noise_mode="const") for psi in (1.0, 0.7, 0.4, 0.0)]
    save_grid(engine.cat(rows).cpu().numpy(), out / "stylegan_truncation.png", nrow=10)


# ------------------------------------------------------------------------------------------
# The PyTorch prototype of the same recipe (optional)


def run_torch(train, judge, args) -> dict:
    torch = torch_prototype(args.seed)
    r = RECIPES["digits"]
    G, D = _torch_networks(torch, r)
    opt_g = torch.optim.Adam(G.parameters(), r["lr"], betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), r["lr"], betas=(0.0, 0.99))
    softplus = torch.nn.functional.softplus
    x_all = torch.from_numpy(train.tensors[0].numpy()) * 2 - 1
    bs, step = r["batch_size"], 0
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.epochs or r["epochs"]):
        perm = torch.randperm(len(x_all))
        for i in range(0, len(perm) - bs + 1, bs):
            real = x_all[perm[i : i + bs]]
            fake = G.synthesis(G.training_ws(bs, r["mixing_prob"]))
            loss_d = softplus(D(fake.detach())).mean() + softplus(-D(real)).mean()
            if r["r1_gamma"] > 0 and step % r["r1_every"] == 0:
                x = real.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
                loss_d = loss_d + g.pow(2).sum((1, 2, 3)).mean() * (
                    r["r1_gamma"] * r["r1_every"] / 2
                )
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            D.requires_grad_(False)
            loss_g = softplus(-D(fake)).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            D.requires_grad_(True)
            step += 1
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    to01 = lambda t: ((t + 1) / 2).clamp(0, 1).numpy()  # noqa: E731
    with torch.no_grad():
        row = {
            "model": "StyleGAN (PyTorch)",
            "device": "cpu",
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            **judge.report(to01(G.synthesis(G.ws(torch.randn(N_SAMPLES, r["z_dim"]))))),
        }
        ws_s, ws_d = G.ws(torch.randn(N_PAIRS, r["z_dim"])), G.ws(torch.randn(N_PAIRS, r["z_dim"]))
        src, dst = to01(G.synthesis(ws_s, "const")), to01(G.synthesis(ws_d, "const"))
        row["mixing"] = {}
        for group, layers in G.groups.items():
            mask = torch.zeros(G.num_ws, dtype=torch.bool)
            mask[layers] = True
            mixed = to01(G.synthesis(torch.where(mask[None, :, None], ws_s, ws_d), "const"))
            row["mixing"][group] = mixing_agreement(judge, src, dst, mixed)
    return row


def _torch_networks(torch, r: dict):
    """The recipe's generator and discriminator in PyTorch (same blocks as generative.stylegan)."""
    nn, F = torch.nn, torch.nn.functional
    gain = math.sqrt(2.0)

    class EqLinear(nn.Module):
        def __init__(self, i, o, bias_init=0.0, lr_mul=1.0):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(o, i) / lr_mul)
            self.bias = nn.Parameter(torch.full((o,), bias_init / lr_mul))
            self.gain, self.lr_mul = lr_mul / math.sqrt(i), lr_mul

        def forward(self, x):
            return F.linear(x, self.weight * self.gain, self.bias * self.lr_mul)

    class ModConv(nn.Module):
        def __init__(self, cin, cout, k, w_dim, demod=True):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
            self.affine = EqLinear(w_dim, cin, bias_init=1.0)
            self.gain, self.demod, self.k = 1 / math.sqrt(cin * k * k), demod, k

        def forward(self, x, w):
            s, weight = self.affine(w), self.weight * self.gain
            y = F.conv2d(x * s[:, :, None, None], weight, padding=self.k // 2)
            if self.demod:
                y = (
                    y
                    * torch.rsqrt((s * s) @ (weight * weight).sum((2, 3)).t() + 1e-8)[
                        ..., None, None
                    ]
                )
            return y

    class Layer(nn.Module):
        def __init__(self, cin, cout, w_dim, res, up):
            super().__init__()
            self.conv, self.up, self.res = ModConv(cin, cout, 3, w_dim), up, res
            self.strength = nn.Parameter(torch.zeros(cout))
            self.bias = nn.Parameter(torch.zeros(cout))
            self.register_buffer("noise_const", torch.randn(1, 1, res, res))

        def forward(self, x, w, noise_mode):
            if self.up:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            y = self.conv(x, w)
            noise = (
                torch.randn(x.shape[0], 1, self.res, self.res)
                if noise_mode == "random"
                else self.noise_const
            )
            y = y + noise * self.strength[None, :, None, None] + self.bias[None, :, None, None]
            return F.leaky_relu(y, 0.2) * gain

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            ch, per, res0, wd = (
                r["channels"],
                r["layers_per_resolution"],
                r["start_resolution"],
                r["w_dim"],
            )
            dims = [r["z_dim"]] + [wd] * r["mapping_layers"]
            self.mapping = nn.ModuleList(
                EqLinear(a, b, lr_mul=0.01) for a, b in zip(dims, dims[1:])
            )
            self.const = nn.Parameter(torch.randn(ch[0], res0, res0))
            layers, cin = [], ch[0]
            for i, c in enumerate(ch):
                layers += [
                    Layer(cin if j == 0 else c, c, wd, res0 * 2**i, i > 0 and j == 0)
                    for j in range(per)
                ]
                cin = c
            self.layers = nn.ModuleList(layers)
            self.to_rgb = nn.ModuleList(ModConv(c, 1, 1, wd, demod=False) for c in ch)
            self.rgb_bias = nn.Parameter(torch.zeros(1))
            self.per, self.num_ws, self.z_dim = per, len(layers), r["z_dim"]
            self.register_buffer("w_avg", torch.zeros(wd))
            self.groups = {
                "coarse": list(range(per)),
                "middle": [per],
                "fine": list(range(per + 1, 2 * per)),
            }

        def ws(self, z, track=False):
            x = z * torch.rsqrt((z * z).mean(1, keepdim=True) + 1e-8)
            for layer in self.mapping:
                x = F.leaky_relu(layer(x), 0.2) * gain
            if track:
                self.w_avg.copy_(x.detach().mean(0).lerp(self.w_avg, 0.995))
            return x[:, None].expand(-1, self.num_ws, -1)

        def training_ws(self, n, mixing_prob):
            ws = self.ws(torch.randn(n, self.z_dim), track=True)
            if torch.rand(()) < mixing_prob:
                cut = int(torch.randint(1, self.num_ws, ()))
                ws = torch.cat([ws[:, :cut], self.ws(torch.randn(n, self.z_dim))[:, cut:]], 1)
            return ws

        def synthesis(self, ws, noise_mode="random"):
            x, image = self.const[None].expand(ws.shape[0], -1, -1, -1), None
            for i, layer in enumerate(self.layers):
                x = layer(x, ws[:, i], noise_mode)
                if (i + 1) % self.per == 0:
                    rgb = self.to_rgb[i // self.per](x, ws[:, i])
                    if image is not None:
                        rgb = rgb + F.interpolate(
                            image, scale_factor=2, mode="bilinear", align_corners=False
                        )
                    image = rgb
            return image + self.rgb_bias

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            ch = r["d_channels"]
            self.convs = nn.ModuleList(
                [nn.Conv2d(1, ch[0], 3, padding=1)]
                + [nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(ch, ch[1:])]
            )
            self.conv_out = nn.Conv2d(ch[-1] + 1, ch[-1], 3, padding=1)
            e = r["d_end_resolution"]
            self.fc, self.out = nn.Linear(ch[-1] * e * e, ch[-1]), nn.Linear(ch[-1], 1)

        def forward(self, x):
            for conv in self.convs:
                x = F.leaky_relu(conv(x), 0.2)
            n, c, h, w = x.shape
            g = min(4, n)
            y = (x.reshape(g, -1, c, h, w).var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))
            x = torch.cat(
                [x, y.reshape(1, -1, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)], 1
            )
            x = F.leaky_relu(self.conv_out(x), 0.2)
            return self.out(F.leaky_relu(self.fc(x.flatten(1)), 0.2))

    return Generator(), Discriminator()


# ------------------------------------------------------------------------------------------


def _print_table(rows: list[dict]) -> None:
    print(f"\n{'model':<19} {'device':>7} {'seconds':>8} {'cpu s':>6} {'classes':>8} {'IS':>6}")
    for r in rows:
        cpu = f"{r['cpu_seconds']:.0f}" if "cpu_seconds" in r else "-"
        print(
            f"{r['model']:<19} {r['device']:>7} {r['seconds']:>8.1f} {cpu:>6} "
            f"{r['classes_covered']:>8d} {r['inception_score']:>6.2f}"
        )
        if "truncated_0.7" in r:
            t = r["truncated_0.7"]
            print(
                f"{'  psi = 0.7':<19} {'':>7} {'':>8} {'':>6} {t['classes_covered']:>8d} "
                f"{t['inception_score']:>6.2f}"
            )
    print("\nstyle mixing: share of mixes judged as the source's / the destination's digit")
    print(f"{'model':<19} {'pairs':>6} " + " ".join(f"{g:>15}" for g in GROUPS))
    for r in rows:
        if "mixing" in r:
            cells = [
                f"{r['mixing'][g]['as_source']:.2f} / {r['mixing'][g]['as_destination']:.2f}"
                for g in GROUPS
            ]
            pairs = r["mixing"][GROUPS[0]]["pairs"]  # the same pairs for every group
            print(f"{r['model']:<19} {pairs:>6d} " + " ".join(f"{c:>15}" for c in cells))


def main(argv: list[str] | None = None) -> list[dict]:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parse(p, argv)

    judge = load_judge()
    train, test = load_digits()
    rows = [real_row(judge.report(test.tensors[0]))]
    rows.append(run_ours(train, judge, args))
    if args.torch:
        rows.append(run_torch(train, judge, args))
    _print_table(rows)
    print(f"\njudge test accuracy {judge.test_accuracy:.3f}; target: classes >= 9")
    write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
