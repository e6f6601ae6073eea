"""`tensortape train classifier`: an MLP or CNN on digits / MNIST / Fashion-MNIST.

Writes OUT/metrics.json (per-epoch train loss, test loss, test accuracy), OUT/curves.png and
OUT/checkpoint.npz (model, optimizer, scheduler, loader and RNG state: `--resume` continues
exactly where the run stopped).
"""

from __future__ import annotations

import argparse
import math

from tqdm import tqdm

import engine
import engine.functional as F
import layers as nn
import optimizers
import regularizers
from dataio import plots
from engine.data import DataLoader

from .common import add_common_arguments, load_dataset, output_dir, resolve_device, write_json

HELP = "an MLP or CNN classifier (the main demo: CNN on the embedded digits)"

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--model", default="cnn", choices=["mlp", "cnn"])
    add_common_arguments(p, epochs=30, batch_size=32, lr=2e-3)
    p.add_argument(
        "--optimizer",
        default="adam",
        choices=OPTIMIZERS,
        help="momentum/nesterov are torch.optim.SGD's (momentum 0.9, buffer in gradient units: "
        "the cosine schedule's lr scales the whole buffer, as in PyTorch)",
    )
    p.add_argument("--l1", type=float, default=0.0, help="L1 penalty weight on the weights")
    p.add_argument("--l2", type=float, default=0.0, help="L2 penalty weight on the weights")
    p.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout probability (default 0.5 for cnn, 0.2 for mlp)",
    )


def mlp(in_shape: tuple, classes: int = 10, hidden: int = 256, dropout: float = 0.2) -> nn.Module:
    """Two hidden ReLU layers; Kaiming-uniform init keeps activation variance layer to layer."""
    n_in = math.prod(in_shape)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, classes),
    )


def cnn(in_shape: tuple, classes: int = 10, dropout: float = 0.5) -> nn.Module:
    """conv3x3(32) ReLU maxpool2, conv3x3(64) ReLU maxpool2, linear(128) ReLU dropout, linear."""
    c, h, w = in_shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (h // 4) * (w // 4), 128),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(128, classes),
    )


def make_optimizer(name: str, params, lr: float):
    """The `--optimizer`. momentum/nesterov use PyTorch's SGD form, not the textbook
    `optimizers.Momentum`/`Nesterov` (velocity in parameter units): under the cosine schedule
    only the former follows a PyTorch run step for step."""
    if name == "sgd":
        return optimizers.SGD(params, lr=lr)
    if name in ("momentum", "nesterov"):
        return optimizers.SGD(params, lr=lr, momentum=0.9, nesterov=name == "nesterov")
    return optimizers.Adam(params, lr=lr)


def evaluate(model: nn.Module, loader: DataLoader) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a loader, in eval mode without a graph."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with engine.no_grad():
        for x, y in loader:
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum().item())
            count += len(y)
    model.train()
    return total_loss / count, correct / count


def run(args) -> dict:
    device = resolve_device(args.device)
    out = output_dir(args, "classifier")
    engine.manual_seed(args.seed)
    train_set, test_set = load_dataset(args.dataset, args.data_dir)
    in_shape = tuple(train_set.tensors[0].shape[1:])
    dropout = args.dropout if args.dropout is not None else (0.2 if args.model == "mlp" else 0.5)
    model = (mlp if args.model == "mlp" else cnn)(in_shape, dropout=dropout)
    model.to(device)
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr)
    sched = optimizers.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    penalties = [
        p
        for p in (
            regularizers.L1(args.l1) if args.l1 else None,
            regularizers.L2(args.l2) if args.l2 else None,
        )
        if p is not None
    ]
    train_loader = DataLoader(
        train_set, args.batch_size, shuffle=True, seed=args.seed, device=device
    )
    test_loader = DataLoader(test_set, 512, device=device)

    history = {"train_loss": [], "test_loss": [], "test_accuracy": []}
    start = 0
    ckpt_path = out / "checkpoint.npz"
    if args.resume and ckpt_path.exists():
        state = engine.load(ckpt_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        train_loader.load_state_dict(state["loader"])
        engine.random.set_rng_state(state["rng"])
        history, start = state["metrics"], state["epoch"]

    bar = tqdm(
        range(start, args.epochs),
        desc=f"{args.model} on {args.dataset}",
        disable=args.no_progress,
        unit="epoch",
    )
    for epoch in bar:
        running, batches = 0.0, 0
        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y)
            for penalty in penalties:
                loss = loss + penalty(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            batches += 1
        sched.step()
        test_loss, test_acc = evaluate(model, test_loader)
        history["train_loss"].append(running / max(batches, 1))
        history["test_loss"].append(test_loss)
        history["test_accuracy"].append(test_acc)
        bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}", test_acc=f"{test_acc:.4f}")
        engine.save(
            {
                "task": "classifier",
                "args": _plain(vars(args)),
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "loader": train_loader.state_dict(),
                "rng": engine.random.get_rng_state(),
                "metrics": history,
            },
            ckpt_path,
        )

    final = history["test_accuracy"][-1] if history["test_accuracy"] else None
    metrics = {
        **history,
        "final_test_accuracy": final,
        "model": args.model,
        "dataset": args.dataset,
        "epochs": args.epochs,
        "device": device,
        # One recipe for every dataset (the options' defaults); what ran:
        "settings": {
            "model": args.model,
            "optimizer": args.optimizer,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "dropout": dropout,
            "l1": args.l1,
            "l2": args.l2,
        },
    }
    write_json(out / "metrics.json", metrics)
    if history["train_loss"]:
        plots.plot_curves(out / "curves.png", history, title=f"{args.model} on {args.dataset}")
    print(
        f"test accuracy {metrics['final_test_accuracy']:.4f} -> {out}/metrics.json, "
        f"{out}/curves.png, {out}/checkpoint.npz"
    )
    return metrics


def _plain(d: dict) -> dict:
    """Arguments as JSON values (checkpoints hold no pickled objects)."""
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool, type(None)))}
