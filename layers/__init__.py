"""Layers with PyTorch's names: `import layers as nn` ports a PyTorch model by changing imports.

`Module`/`Parameter` and the containers live in `layers.module`, initialisation schemes in
`layers.init`; `Dropout`/`Dropout2d` come from `regularizers` and are re-exported here.
"""

# Dropout lives in regularizers (it imports only layers.module, so either package may load first).
from regularizers.dropout import Dropout, Dropout2d

from . import init
from .activation import (
    CELU,
    ELU,
    GELU,
    GLU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSigmoid,
    LogSoftmax,
    Mish,
    PReLU,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Softsign,
    Tanh,
)
from .attention import MultiheadAttention
from .conv import Conv2d, ConvTranspose2d
from .linear import Embedding, Flatten, Identity, Linear, Unflatten
from .loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    GaussianNLLLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .module import IncompatibleKeys, Module, ModuleDict, ModuleList, Parameter, Sequential
from .normalization import (
    BatchNorm1d,
    BatchNorm2d,
    GroupNorm,
    InstanceNorm2d,
    LayerNorm,
    RMSNorm,
)
from .padding import (
    CircularPad2d,
    ConstantPad2d,
    ReflectionPad2d,
    ReplicationPad2d,
    ZeroPad2d,
)
from .pooling import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    MaxPool2d,
    Upsample,
    UpsamplingBilinear2d,
    UpsamplingNearest2d,
)

__all__ = [
    "init",
    "Module",
    "Parameter",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "IncompatibleKeys",
    "Identity",
    "Linear",
    "Flatten",
    "Unflatten",
    "Embedding",
    "MultiheadAttention",
    "RMSNorm",
    "Conv2d",
    "ConvTranspose2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "Upsample",
    "UpsamplingNearest2d",
    "UpsamplingBilinear2d",
    "ReLU",
    "LogSigmoid",
    "Hardsigmoid",
    "Hardswish",
    "Mish",
    "SELU",
    "CELU",
    "Softsign",
    "GLU",
    "PReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "SiLU",
    "Sigmoid",
    "Tanh",
    "Softplus",
    "Softmax",
    "LogSoftmax",
    "Hardtanh",
    "ReLU6",
    "BatchNorm1d",
    "BatchNorm2d",
    "InstanceNorm2d",
    "LayerNorm",
    "GroupNorm",
    "Dropout",
    "Dropout2d",
    "CrossEntropyLoss",
    "NLLLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "MSELoss",
    "L1Loss",
    "SmoothL1Loss",
    "KLDivLoss",
    "GaussianNLLLoss",
    "ReflectionPad2d",
    "ReplicationPad2d",
    "ZeroPad2d",
    "ConstantPad2d",
    "CircularPad2d",
]
