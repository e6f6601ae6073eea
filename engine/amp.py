"""`engine.amp`: PyTorch's torch.amp: `autocast` (engine/autocast_mode.py) and `GradScaler`.

GradScaler (dynamic loss scaling): float16 gradients underflow to zero below ~6e-8, so the loss
is multiplied by a large scale before backward and the gradients divided by it before the
optimizer step. A step whose gradients hold an inf or NaN (the scale was too large) is skipped
and the scale shrinks (`backoff_factor`); after `growth_interval` clean steps it grows
(`growth_factor`). Semantics and state_dict keys are torch.amp.GradScaler's.

The inf/NaN check is one device-side pass over all gradients of an optimizer: the gradients
are unscaled into one flat buffer, checked for inf/NaN into one device flag, and handed back as
views of it; `step` reads that one flag on the host (the step's only sync). On cuda with float32
gradients (the master weights' under autocast) that is one kernel (kernels/cuda/grad.cu's
`unscale_multi`, PyTorch's `_amp_foreach_non_finite_check_and_unscale_`); else one
concatenation, one multiply and one `isfinite(...).all()`. The scale itself is a host number:
`scale(loss)` multiplies by it with no device array, and `update()` needs no device read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from .autocast_mode import autocast, get_autocast_dtype, is_autocast_enabled

__all__ = ["autocast", "GradScaler", "is_autocast_enabled", "get_autocast_dtype"]

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    """`engine.amp.GradScaler(init_scale=2.**16, growth_factor=2., backoff_factor=.5,
    growth_interval=2000, enabled=True)`.

    A step: `scaler.scale(loss).backward()`; optionally `scaler.unscale_(opt)` then clip;
    `scaler.step(opt)` (skipped on inf/NaN); `scaler.update()`.
    """

    def __init__(
        self,
        device: str = "cuda",
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ) -> None:
        if isinstance(device, (int, float)):  # GradScaler(2.**10): the scale given positionally
            device, init_scale = "cuda", float(device)
        if not growth_factor > 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be in (0, 1), got {backoff_factor}")
        if int(growth_interval) != growth_interval or growth_interval < 1:
            raise ValueError(
                f"GradScaler: growth_interval must be a positive int, got {growth_interval!r}"
            )
        if not init_scale > 0 or not math.isfinite(init_scale):
            raise ValueError(
                f"GradScaler: init_scale must be positive and finite, got {init_scale}"
            )
        self.device = device
        self._enabled = bool(enabled)
        self._scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self._per_optimizer: dict[int, dict[str, Any]] = {}

    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        return self._scale if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def scale(self, outputs):
        """`outputs` (a Tensor, or a list/tuple of them) times the current scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        return outputs * self._scale

    def _state(self, optimizer) -> dict[str, Any]:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": None})

    def unscale_(self, optimizer) -> None:
        """Divide `optimizer`'s gradients by the scale (in one fused pass) and record whether
        any is inf/NaN (on the device). Call it before clipping; at most once per step."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError(
                "unscale_() has already been called on this optimizer since the last update()."
            )
        if state["stage"] == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        state["found_inf"] = _unscale_grads(
            [p for g in optimizer.param_groups for p in g["params"]], 1.0 / self._scale
        )
        state["stage"] = _UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """`optimizer.step()` unless a gradient is inf/NaN (then the step is skipped: parameters
        and optimizer state stay as they were). Returns the step's return value or None."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        state = self._state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        found = state["found_inf"]
        state["stage"] = _STEPPED
        # The step's one host read: one flag for all gradients of this optimizer.
        state["skipped"] = found is not None and bool(found)
        if state["skipped"]:
            return None
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale: float | None = None) -> None:
        """Back off after a skipped step, grow after `growth_interval` clean ones; or set the
        scale to `new_scale`. Call once per iteration, after every `step`."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = float(new_scale)
        else:
            stepped = [s for s in self._per_optimizer.values() if s["stage"] == _STEPPED]
            if not stepped:
                raise RuntimeError("No inf checks were recorded prior to update().")
            if any(s["skipped"] for s in stepped):
                self._scale *= self._backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    self._scale *= self._growth_factor
                    self._growth_tracker = 0
        self._per_optimizer = {}

    def state_dict(self) -> dict[str, Any]:
        """torch's keys: scale, growth_factor, backoff_factor, growth_interval, _growth_tracker
        (empty when disabled, as torch)."""
        if not self._enabled:
            return {}
        return {
            "scale": self._scale,
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError(
                "The source state dict is empty, possibly because it was saved from a disabled "
                "instance of GradScaler."
            )
        self._scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])


def _unscale_grads(params: list, inv_scale: float):
    """Multiply every gradient by `inv_scale` into one flat float32 buffer; the gradients
    become views of it (none is written in place: two .grads may be one array). Returns the
    device's 0-d "found inf/NaN" flag (None: no gradients)."""
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return None
    xp = with_grad[0].grad.xp
    grads = [p.grad.array for p in with_grad]
    if _one_kernel(xp, grads):
        from kernels import grad_gpu  # noqa: PLC0415 (CuPy only on cuda)

        flat, found_inf = grad_gpu.unscale_multi(grads, inv_scale)
    else:
        flat = xp.concatenate([g.reshape(-1).astype(numpy.float32, copy=False) for g in grads])
        flat *= numpy.float32(inv_scale)
        found_inf = ~xp.isfinite(flat).all()  # the one reduction over all gradients
    offset = 0
    for p, g in zip(with_grad, grads, strict=True):
        view = flat[offset : offset + g.size].reshape(g.shape)
        offset += g.size
        p.grad = p.grad._new(view if view.dtype == g.dtype else view.astype(g.dtype), p.grad.device)
    return found_inf


def _one_kernel(xp, grads: list) -> bool:
    """Whether the unscale runs as one kernel: on cuda, float32 C-contiguous gradients on one
    device (the flat buffer is float32 in either form, so a float64 gradient stays on the
    concatenation, its result the same)."""
    first = grads[0]
    return xp is not numpy and all(
        g.dtype == numpy.float32 and g.flags.c_contiguous and g.device == first.device
        for g in grads
    )
