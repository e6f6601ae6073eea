"""The smallest Trainer, shared by the trainer and logger tests."""

from __future__ import annotations

import engine
import layers as nn
import optimizers
from generative.trainer import Trainer, evaluating


class NoisyRegressor(Trainer):
    """A linear map fit to targets with input noise (so RNG matters); a "sometimes" metric
    on even steps (so a metric can be missing from a log point)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.net = nn.Linear(4, 4).to(self.device)
        self.networks = {"net": self.net}
        self.optimizers = {"net": optimizers.Adam(self.net.parameters(), lr=1e-2)}

    def train_step(self, batch):
        x, y = batch
        noisy = x + 0.1 * engine.randn(*x.shape, device=self.device)
        opt = self.optimizers["net"]
        opt.zero_grad()
        loss = ((self.net(noisy) - y) ** 2).mean()
        self.backward(loss)
        self.step(opt)
        out = {"loss": loss}  # a 0-d Tensor: the base reads it at log points
        if self.global_step % 2 == 0:
            out["sometimes"] = 1.0
        return out

    def sample(self, n):
        with evaluating(self.net):
            return self.net(engine.rand(n, 4, device=self.device)).sigmoid().reshape(n, 1, 2, 2)
