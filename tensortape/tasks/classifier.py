"""`tensortape train classifier`: an MLP or CNN on digits / MNIST / Fashion-MNIST.

Writes OUT/metrics.json (per-epoch train loss, test loss, test accuracy), OUT/curves.png and
OUT/checkpoint.npz (model, optimizer, scheduler, loader and RNG state: `--resume` continues
exactly where the run stopped). The loop, checkpoints and resume are `generative.Trainer`'s;
`ClassifierTrainer` adds the cross-entropy step and the per-epoch test numbers.

The learning rate follows a cosine over the run's `--epochs` (to 0 at the last epoch). A resumed
run with the same `--epochs` continues it exactly; with another total the rest is re-planned
(`plan_schedule`): from the rate the next epoch would have used, a half cosine down to 0 at the
new total, so the curve stays continuous. A finished schedule (its rate already 0) cannot be
extended: that is an error, not a run at lr 0 or a silent warm restart.
"""

from __future__ import annotations

import argparse
import math

import engine
import engine.functional as F
import layers as nn
import optimizers
import regularizers
from engine.data import DataLoader
from generative.trainer import Trainer, evaluating

from .common import (
    UsageError,
    add_common_arguments,
    dropout_probability,
    load_dataset,
    non_negative_float,
    prepare_run,
    resolve_device,
    resume,
)

HELP = "an MLP or CNN classifier (the main demo: CNN on the embedded digits)"

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
#: Each optimizer's default --lr (one 2e-3 for all, Adam's, left plain SGD far from converged):
#: with them every optimizer reaches >= 0.96 test accuracy on the digits MLP with the other
#: defaults (30 epochs, batch 32, cosine schedule); tests/cli/test_classifier_cli.py checks it.
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.02, "nesterov": 0.02, "adam": 2e-3}


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--model", default="cnn", choices=["mlp", "cnn"], help="architecture")
    per_optimizer = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
    add_common_arguments(p, epochs=30, batch_size=32, lr=None, lr_default=per_optimizer)
    p.add_argument(
        "--optimizer",
        default="adam",
        choices=OPTIMIZERS,
        help="momentum/nesterov are torch.optim.SGD's (momentum 0.9, buffer in gradient units: "
        "the cosine schedule's lr scales the whole buffer, as in PyTorch)",
    )
    p.add_argument(
        "--l1", type=non_negative_float, default=0.0, help="L1 penalty weight on the weights"
    )
    p.add_argument(
        "--l2", type=non_negative_float, default=0.0, help="L2 penalty weight on the weights"
    )
    p.add_argument(
        "--dropout",
        type=dropout_probability,
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
    total_loss, correct, count = 0.0, 0, 0
    with evaluating(model):
        for x, y in loader:
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum().item())
            count += len(y)
    return total_loss / count, correct / count


class ClassifierTrainer(Trainer):
    """Cross-entropy (plus weight penalties) on (image, label) batches, on the one Trainer.

    After each epoch the scheduler steps and `test_loss`/`test_accuracy` on `test_loader` join
    the histories; a classifier draws no sample grids.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer,
        scheduler=None,
        penalties=(),
        test_loader: DataLoader | None = None,
        settings: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model.to(self.device)
        self.penalties = list(penalties)
        self.test_loader = test_loader
        self.settings = dict(settings or {})
        self.networks = {"model": self.model}
        self.optimizers = {"model": optimizer}
        if scheduler is not None:
            self.schedulers = {"lr": scheduler}
        self.checkpoint_meta = {"task": "classifier"}

    def train_step(self, batch: tuple) -> dict:
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        for penalty in self.penalties:
            loss = loss + penalty(self.model)
        opt = self.optimizers["model"]
        opt.zero_grad()
        self.backward(loss)
        self.step(opt)
        return {"train_loss": loss}

    def epoch_metrics(self) -> dict[str, float]:
        if self.test_loader is None:
            return {}
        test_loss, test_acc = evaluate(self.model, self.test_loader)
        return {"test_loss": test_loss, "test_accuracy": test_acc}

    def preview(self) -> None:
        return None  # a classifier has no sample grid

    def config(self) -> dict:
        return dict(self.settings)

    def metrics(self) -> dict:
        accuracy = self.history.get("test_accuracy") or [None]
        settings = {k: v for k, v in self.settings.items() if k not in ("dataset", "seed")}
        return {
            "final_test_accuracy": accuracy[-1],
            "dataset": self.settings.get("dataset"),
            "device": str(self.device),
            "settings": {**settings, "epochs": self.epoch},
            **super().metrics(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(_upgrade(state) if "format" not in state else state)


def _upgrade(state: dict) -> dict:
    """A checkpoint of the classifier's former own loop, in the Trainer's format."""
    old = state.get("metrics") or {}
    epochs = int(state["epoch"])
    history = {"epoch": list(range(1, epochs + 1)), **{k: list(v) for k, v in old.items()}}
    return {
        "task": "classifier",
        "format": "tensortape-trainer",
        "model": "ClassifierTrainer",
        "epoch": epochs,
        "global_step": 0,  # not recorded by that format; only counts steps
        "history": history,
        "networks": {"model": state["model"]},
        "optimizers": {"model": state["optimizer"]},
        "schedulers": {"lr": state["scheduler"]},
        "rng": state["rng"],
        "loader": state["loader"],
    }


def plan_schedule(trainer: Trainer, epochs: int, ckpt) -> str:
    """Fit the resumed cosine schedule to the total `epochs` (see the module's docstring);
    returns a note for the "resuming" line when it re-plans."""
    scheduler = trainer.schedulers["lr"]
    done, left = trainer.epoch, scheduler.T_max - scheduler.last_epoch
    end = done + left  # the epoch the checkpoint's schedule reaches 0 at
    if epochs in (end, done):
        return ""
    lr = scheduler.get_last_lr()[0]
    if left <= 0:
        raise UsageError(
            f"--epochs {epochs}: {ckpt} is a finished run (its cosine lr schedule reached "
            f"{lr:g} at epoch {done}), so more epochs would not train; to train longer, start a "
            f"new run with --epochs {epochs} (another --out, or --overwrite)"
        )
    for group in scheduler.optimizer.param_groups:  # the new cosine starts at the current rate
        group["initial_lr"] = group["lr"]
    trainer.schedulers["lr"] = optimizers.lr_scheduler.CosineAnnealingLR(
        scheduler.optimizer, T_max=epochs - done, eta_min=scheduler.eta_min
    )
    return (f"; lr schedule re-planned: cosine from {lr:.4g} after epoch {done} to "
            f"{scheduler.eta_min:g} at epoch {epochs} (it ended at epoch {end})")  # fmt: skip


def settings(args) -> dict:
    """What ran (one recipe for every dataset: the options' defaults); metrics.json's "settings"."""
    names = ("model", "optimizer", "epochs", "batch_size", "lr", "dropout", "l1", "l2")
    return {name: getattr(args, name) for name in names}


def run(args) -> dict:
    device = resolve_device(args.device)
    out = prepare_run(args, "classifier")
    engine.manual_seed(args.seed)
    train_set, test_set = load_dataset(args.dataset, args.data_dir)
    in_shape = tuple(train_set.tensors[0].shape[1:])
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    if args.dropout is None:
        args.dropout = 0.2 if args.model == "mlp" else 0.5
    model = (mlp if args.model == "mlp" else cnn)(in_shape, dropout=args.dropout)
    model.to(device)
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr)
    penalties = [
        p
        for p in (
            regularizers.L1(args.l1) if args.l1 else None,
            regularizers.L2(args.l2) if args.l2 else None,
        )
        if p is not None
    ]
    trainer = ClassifierTrainer(
        model,
        opt,
        optimizers.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs),
        penalties,
        test_loader=DataLoader(test_set, 512, device=device),
        settings={"dataset": args.dataset, "seed": args.seed, **settings(args)},
        device=device,
        out_dir=out,
        progress=not args.no_progress,
    )
    train_loader = DataLoader(
        train_set, args.batch_size, shuffle=True, seed=args.seed, device=device
    )
    trainer.curves_title = f"{args.model} on {args.dataset}"
    resume(trainer, out, args, plan=plan_schedule)
    history = trainer.fit(train_loader, args.epochs)
    metrics = trainer.metrics()
    print(
        f"test accuracy {metrics['final_test_accuracy']:.4f}, loss "
        f"{history['train_loss'][-1]:.4f} -> {out}/metrics.json, {out}/curves.png, "
        f"{out}/checkpoint.npz"
    )
    return metrics
