"""What real CuPy offers, and the checks that hold the stand-in to it.

The tables come from ``tests/cuda_sim/cupy_api.py``, generated from an installed CuPy (14.2.0) by
``tests/cuda_sim/gen_cupy_api.py``. A name missing there raises ``AttributeError`` as on a GPU;
a call whose arguments do not fit CuPy's signature raises ``TypeError`` before NumPy runs it
(NumPy often takes keywords CuPy lacks: ``where=``, ``initial=``, ``clip(min=)``, ``kind=``).
"""

from __future__ import annotations

import inspect
from typing import Callable

from .. import cupy_api as tables

VERSION = tables.VERSION
WHERE = "tests/cuda_sim/cupy_api.py"

_KINDS = {
    "/": inspect.Parameter.POSITIONAL_ONLY,
    "k:": inspect.Parameter.KEYWORD_ONLY,
}
_signatures: dict[tuple, inspect.Signature] = {}
_rules: dict[tuple, tuple[int, float, frozenset | None]] = {}


def missing(qualname: str, owner: str) -> AttributeError:
    """The error for a name CuPy does not have (``owner`` as CuPy's own message names it)."""
    attr = qualname.rsplit(".", 1)[-1]
    return AttributeError(
        f"{owner} has no attribute {attr!r}: CuPy {VERSION} has no {qualname} ({WHERE}); "
        "it would fail on a GPU"
    )


def not_simulated(qualname: str) -> AttributeError:
    return AttributeError(
        f"{qualname} exists in CuPy {VERSION} but the CuPy stand-in does not simulate it "
        "(NumPy has no function of that name)"
    )


def signature(params: tuple[str, ...]) -> inspect.Signature:
    """An ``inspect.Signature`` for a parameter spec of the tables (defaults are ``None``)."""
    sig = _signatures.get(params)
    if sig is None:
        out = []
        for p in params:
            if p.startswith("**"):
                out.append(inspect.Parameter(p[2:], inspect.Parameter.VAR_KEYWORD))
                continue
            if p.startswith("*"):
                out.append(inspect.Parameter(p[1:], inspect.Parameter.VAR_POSITIONAL))
                continue
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
            if p.endswith("/"):
                kind, p = _KINDS["/"], p[:-1]
            if p.startswith("k:"):
                kind, p = _KINDS["k:"], p[2:]
            name, eq, _ = p.partition("=")
            default = None if eq else inspect.Parameter.empty
            out.append(inspect.Parameter(name, kind, default=default))
        sig = _signatures[params] = inspect.Signature(out)
    return sig


def _fast_rule(params: tuple[str, ...]) -> tuple[int, float, frozenset | None]:
    """(fewest and most positional arguments, keywords allowed or None for any) for ``params``.

    A call within these bounds binds; only the others pay for ``Signature.bind`` (and its error
    message). A required keyword-only parameter makes the fewest infinite: always bind.
    """
    rule = _rules.get(params)
    if rule is None:
        plain = [p for p in params if not p.startswith(("*", "k:"))]
        fewest = sum("=" not in p for p in plain)
        if any(p.startswith("k:") and "=" not in p for p in params):
            fewest = 1 << 30
        has_var = any(p.startswith("*") and not p.startswith("**") for p in params)
        most = float("inf") if has_var else len(plain)
        keywords = None
        if not any(p.startswith("**") for p in params):
            named = [p for p in params if not p.startswith("*") and not p.endswith("/")]
            keywords = frozenset(p.removeprefix("k:").split("=")[0] for p in named)
        rule = _rules[params] = (fewest, most, keywords)
    return rule


def check_call(qualname: str, params: tuple[str, ...] | None, args, kwargs) -> None:
    """Raise ``TypeError`` when ``args``/``kwargs`` do not fit CuPy's signature of ``qualname``."""
    if params is None:
        return
    fewest, most, keywords = _fast_rule(params)
    if fewest <= len(args) <= most and (keywords is None or keywords.issuperset(kwargs)):
        return
    try:
        signature(params).bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(
            f"{qualname}({', '.join(params)}): {exc} (CuPy {VERSION}'s signature, {WHERE}; "
            "NumPy may accept this, CuPy does not)"
        ) from None


def checked(func: Callable, qualname: str, params: tuple[str, ...] | None) -> Callable:
    """``func`` behind a check of its arguments against CuPy's signature ``params``."""

    def wrapper(*args, **kwargs):
        check_call(qualname, params, args, kwargs)
        return func(*args, **kwargs)

    wrapper.__name__ = qualname.rsplit(".", 1)[-1]
    wrapper.__qualname__ = qualname
    wrapper.__doc__ = getattr(func, "__doc__", None)
    return wrapper
