"""`Callback`: the hook points of `Trainer.fit`, for loggers and other observers of a fit.

Below the trainer and the loggers alike (both import this module, it imports neither): each hook
gets the running `Trainer` as its first argument.
"""

from __future__ import annotations

from engine import Tensor


class Callback:
    """Hook points for loggers and other observers of a fit; every method is optional.

    `on_log` gets the running means of the losses at each log point (every `log_every` steps
    and at the end of each epoch); `on_epoch_end` the epoch's record as it enters the history.
    """

    def on_fit_start(self, trainer) -> None:
        pass

    def on_log(self, trainer, values: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        pass

    def on_samples(self, trainer, images: Tensor) -> None:
        pass

    def on_fit_end(self, trainer) -> None:
        pass
