"""tensortape's engine: a device-agnostic Tensor (NumPy on cpu, CuPy on cuda) and its tape."""

import kernels  # first: it sets OpenBLAS's idle spin before NumPy loads OpenBLAS

from . import amp, backends, memory, random
from .autocast_mode import autocast, get_autocast_dtype, is_autocast_enabled
from .autograd import (
    Function,
    backward,
    detect_anomaly,
    enable_grad,
    grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from .creation import (
    arange,
    empty,
    empty_like,
    eye,
    from_dlpack,
    full,
    full_like,
    linspace,
    normal,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    zeros,
    zeros_like,
)
from .determinism import are_deterministic_algorithms_enabled, use_deterministic_algorithms
from .device import Device, cuda, device
from .gradcheck import gradcheck
from .ops import *  # noqa: F401,F403  (the torch-style functional forms: engine.exp(x), ...)
from .ops import __all__ as _ops_all
from .random import manual_seed, seed
from .tensor import Tensor, as_tensor, from_numpy, tensor
from .tensorbase import promote_types, result_type
from .threads import get_num_threads, set_num_threads

float16, bfloat16, float32, float64 = "float16", "bfloat16", "float32", "float64"
int32, int64, uint8, bool = "int32", "int64", "uint8", "bool"  # noqa: A001
half, float, double, long = float16, float32, float64, int64

from . import (  # noqa: E402
    data,
    functional,  # noqa: E402  (after ops, which functional builds on)
    linalg,
    utils,
)
from .serialization import load, save  # noqa: E402

__all__ = [
    "Tensor",
    "tensor",
    "autocast",
    "amp",
    "backends",
    "is_autocast_enabled",
    "get_autocast_dtype",
    "result_type",
    "promote_types",
    "as_tensor",
    "from_numpy",
    "from_dlpack",
    "Device",
    "device",
    "cuda",
    "Function",
    "backward",
    "grad",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_grad_enabled",
    "detect_anomaly",
    "gradcheck",
    "use_deterministic_algorithms",
    "are_deterministic_algorithms_enabled",
    "manual_seed",
    "seed",
    "set_num_threads",
    "get_num_threads",
    "random",
    "memory",
    "functional",
    "zeros",
    "ones",
    "full",
    "empty",
    "arange",
    "linspace",
    "eye",
    "rand",
    "randn",
    "randint",
    "randperm",
    "normal",
    "zeros_like",
    "ones_like",
    "full_like",
    "empty_like",
    "rand_like",
    "randn_like",
    "data",
    "linalg",
    "utils",
    "save",
    "load",
] + list(_ops_all)
