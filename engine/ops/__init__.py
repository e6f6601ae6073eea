"""Every differentiable op of the engine, and the Tensor methods that mirror them."""

from __future__ import annotations

from ..tensor import Tensor
from .linalg import linear, matmul
from .math import (
    abs,
    add,
    clamp,
    clip,
    cos,
    div,
    erf,
    exp,
    isfinite,
    isnan,
    lerp,
    log,
    log1p,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    relu,
    rsqrt,
    sigmoid,
    sign,
    sin,
    sqrt,
    square,
    sub,
    tanh,
    where,
)
from .reduction import (
    amax,
    amin,
    argmax,
    argmin,
    logsumexp,
    max,
    mean,
    min,
    norm,
    prod,
    std,
    sum,
    var,
)
from .shape import (
    as_tensor,
    astype,
    broadcast_to,
    cat,
    chunk,
    clone,
    concat,
    expand,
    expand_as,
    flatten,
    flip,
    getitem,
    pad,
    permute,
    repeat,
    reshape,
    split,
    squeeze,
    stack,
    sum_to,
    t,
    tile,
    to_device,
    transpose,
    unbind,
    unflatten,
    unsqueeze,
    view,
)


def _method(fn):
    def method(self, *args, **kwargs):
        return fn(self, *args, **kwargs)

    method.__name__ = fn.__name__
    method.__doc__ = fn.__doc__
    return method


_TENSOR_METHODS = dict(
    exp=exp,
    log=log,
    log1p=log1p,
    sqrt=sqrt,
    rsqrt=rsqrt,
    abs=abs,
    sin=sin,
    cos=cos,
    tanh=tanh,
    sigmoid=sigmoid,
    relu=relu,
    clip=clip,
    clamp=clamp,
    square=square,
    sign=sign,
    erf=erf,
    neg=neg,
    pow=pow,
    add=add,
    sub=sub,
    mul=mul,
    div=div,
    matmul=matmul,
    maximum=maximum,
    minimum=minimum,
    isfinite=isfinite,
    isnan=isnan,
    lerp=lerp,
    sum=sum,
    mean=mean,
    var=var,
    std=std,
    max=max,
    min=min,
    amax=amax,
    amin=amin,
    prod=prod,
    argmax=argmax,
    argmin=argmin,
    logsumexp=logsumexp,
    norm=norm,
    reshape=reshape,
    view=view,
    flatten=flatten,
    unflatten=unflatten,
    squeeze=squeeze,
    unsqueeze=unsqueeze,
    permute=permute,
    transpose=transpose,
    t=t,
    expand=expand,
    expand_as=expand_as,
    broadcast_to=broadcast_to,
    repeat=repeat,
    tile=tile,
    split=split,
    chunk=chunk,
    unbind=unbind,
    flip=flip,
    sum_to=sum_to,
)


def _view_as(self, other):
    return reshape(self, other.shape)


def _reshape_as(self, other):
    return reshape(self, other.shape)


for _name, _fn in _TENSOR_METHODS.items():
    setattr(Tensor, _name, _method(_fn))
Tensor.view_as = _view_as
Tensor.reshape_as = _reshape_as
Tensor.clone = _method(clone)

__all__ = sorted(
    set(_TENSOR_METHODS)
    | {
        "getitem",
        "cat",
        "concat",
        "stack",
        "where",
        "pad",
        "linear",
        "astype",
        "to_device",
        "clone",
        "as_tensor",
    }
)
