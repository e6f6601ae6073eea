"""The judge: a digits classifier that scores generated 8x8 digits.

Trained by the project itself once (an MLP 64-128-10, ~98% test accuracy on the embedded
digits, a few seconds on a CPU) and cached on disk as an `engine.save` checkpoint, by default
under `$TENSORTAPE_CACHE` or `~/.cache/tensortape/`. For a batch of generated images it reports

- `class_shares(images)`: the share of samples the judge assigns to each class;
- `classes_covered(images, threshold=0.02)`: how many classes get at least `threshold` of them;
- `inception_score(images)`: exp(E_x KL(p(y|x) || p(y))), from 1 (one class, or noise) to 10
  (confident and balanced over all ten classes);
- `accuracy(images, labels)`: how often the judge agrees with the requested labels (cGANs).

Training draws from its own fixed-seed stream, so the judge is the same on every machine and the
engine's random state is left as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy

import engine
import engine.functional as F
import layers as nn
import optimizers
from engine import Tensor

from .trainer import _cpu_rng_preserved

__all__ = ["Judge", "load_judge", "default_cache_dir"]

JUDGE_FILE = "digits_judge_v1.npz"  # bump the version when the recipe changes
NUM_CLASSES = 10
IMAGE_SIZE = 64  # 8x8
COVERAGE_THRESHOLD = 0.02  # the share of samples a class needs to count as covered


def default_cache_dir() -> Path:
    """`$TENSORTAPE_CACHE`, else `~/.cache/tensortape`."""
    return Path(os.environ.get("TENSORTAPE_CACHE", Path.home() / ".cache" / "tensortape"))


def _classifier() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(IMAGE_SIZE, 128), nn.ReLU(), nn.Linear(128, NUM_CLASSES)
    )


class Judge:
    """Wraps a trained digits classifier (on cpu) with the quality measures."""

    def __init__(self, model: nn.Module, test_accuracy: float | None = None) -> None:
        self.model = model.to("cpu").eval()
        self.test_accuracy = test_accuracy

    def probabilities(self, images: Any, batch_size: int = 1024) -> numpy.ndarray:
        """p(y|x) as a float64 array (N, 10); images (N, 1, 8, 8) or (N, 64) in [0, 1]."""
        x = images.detach().cpu().numpy() if isinstance(images, Tensor) else numpy.asarray(images)
        if x.ndim < 2 or x[0].size != IMAGE_SIZE:
            raise ValueError(
                f"the digits judge takes 8x8 images shaped (N, 1, 8, 8) or (N, 64), "
                f"got shape {x.shape}"
            )
        x = x.reshape(len(x), IMAGE_SIZE).astype(numpy.float32)
        out = []
        with engine.no_grad():
            for i in range(0, len(x), batch_size):
                logits = self.model(engine.tensor(x[i : i + batch_size]))
                out.append(F.softmax(logits, dim=1).numpy().astype(numpy.float64))
        return numpy.concatenate(out) if out else numpy.zeros((0, NUM_CLASSES))

    def predict(self, images: Any) -> numpy.ndarray:
        """The judged class of each image, int64 (N,)."""
        return self.probabilities(images).argmax(1)

    def class_shares(self, images: Any) -> numpy.ndarray:
        """Fraction of the images judged to be each class, (10,)."""
        return _class_shares(self.probabilities(images))

    def classes_covered(self, images: Any, threshold: float = COVERAGE_THRESHOLD) -> int:
        """Number of classes that receive at least `threshold` of the images."""
        return int((self.class_shares(images) >= threshold).sum())

    def inception_score(self, images: Any) -> float:
        """exp(mean_x KL(p(y|x) || p(y))) with p(y) the mean prediction over the images."""
        return _inception_score(self.probabilities(images))

    def accuracy(self, images: Any, labels: Any) -> float:
        """Share of images judged to be their requested label."""
        return _accuracy(self.predict(images), labels)

    def report(self, images: Any, labels: Any = None) -> dict[str, Any]:
        """All measures at once, JSON-able (the judge runs over the images once)."""
        p = self.probabilities(images)
        shares = _class_shares(p)
        out = {
            "classes_covered": int((shares >= COVERAGE_THRESHOLD).sum()),
            "inception_score": _inception_score(p),
            "class_shares": [round(float(s), 4) for s in shares],
        }
        if labels is not None:
            out["label_accuracy"] = _accuracy(p.argmax(1), labels)
        return out


def _class_shares(p: numpy.ndarray) -> numpy.ndarray:
    return numpy.bincount(p.argmax(1), minlength=NUM_CLASSES) / max(len(p), 1)


def _inception_score(p: numpy.ndarray) -> float:
    log_p = numpy.log(numpy.clip(p, 1e-12, None))
    log_py = numpy.log(numpy.clip(p.mean(0, keepdims=True), 1e-12, None))
    return float(numpy.exp((p * (log_p - log_py)).sum(1).mean()))


def _accuracy(pred: numpy.ndarray, labels: Any) -> float:
    labels = labels.numpy() if isinstance(labels, Tensor) else numpy.asarray(labels)
    if labels.shape != pred.shape:
        raise ValueError(f"labels {labels.shape} do not match {len(pred)} images")
    return float((pred == labels).mean())


def train_judge(epochs: int = 20, seed: int = 0) -> Judge:
    """Train the judge on the digits' train split (seeded; the engine's state is restored)."""
    train, test = engine.data.load_digits()
    with _cpu_rng_preserved():
        gen = engine.random.generator(engine.device("cpu"))
        gen.bit_generator.state = numpy.random.PCG64(seed).state
        model = _classifier()
        opt = optimizers.Adam(model.parameters(), lr=3e-3)
        loader = engine.data.DataLoader(train, batch_size=128, shuffle=True, seed=seed)
        for _ in range(epochs):
            for x, y in loader:
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
    judge = Judge(model)
    x_test, y_test = test.tensors
    judge.test_accuracy = judge.accuracy(x_test, y_test)
    return judge


def load_judge(path: str | os.PathLike | None = None, retrain: bool = False) -> Judge:
    """The cached judge at `path` (default: `default_cache_dir() / JUDGE_FILE`), trained and
    saved first if it is missing (or `retrain`)."""
    path = Path(path) if path is not None else default_cache_dir() / JUDGE_FILE
    if path.exists() and not retrain:
        state = engine.load(path, map_location="cpu")
        model = _classifier()
        model.load_state_dict(state["model"])
        return Judge(model, state.get("test_accuracy"))
    judge = train_judge()
    path.parent.mkdir(parents=True, exist_ok=True)
    engine.save({"model": judge.model.state_dict(), "test_accuracy": judge.test_accuracy}, path)
    return judge
