"""Optimizers over parameters (Tensors with `.grad`), schedulers and gradient clipping.

PyTorch's names and argument orders: `SGD`, `Adam`, `AdamW`, `RMSprop`, `Adagrad`, `Adadelta`,
plus the textbook `Momentum` and `Nesterov`. Each parameter's update is one fused pass
(`kernels.optim_cpu` on NumPy, one RawKernel from `kernels/cuda/optim.cu` on CUDA).
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from .adaptive import Adadelta, Adagrad, RMSprop
from .optimizer import Optimizer, required
from .sgd import SGD, Momentum, Nesterov
from .utils import clip_grad_norm_, clip_grad_value_

__all__ = [
    "Optimizer",
    "required",
    "SGD",
    "Momentum",
    "Nesterov",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "lr_scheduler",
    "clip_grad_norm_",
    "clip_grad_value_",
]
