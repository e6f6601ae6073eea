"""Write ``cupy_api.py``: the names and signatures that real CuPy offers, for the stand-in.

Run with a Python where real CuPy is installed; no GPU or driver is needed, only ``import cupy``::

    python -m venv /tmp/cupyenv && /tmp/cupyenv/bin/pip install cupy-cuda12x==14.2.0
    /tmp/cupyenv/bin/python tests/cuda_sim/gen_cupy_api.py > tests/cuda_sim/cupy_api.py
    ruff format tests/cuda_sim/cupy_api.py

Each entry is ``name: spec`` with spec one of ``("ufunc", nin, nout)``, ``("module",)``,
``("value",)`` (types, dtypes, constants), ``("function", params)`` or ``("attribute",)``.
``params`` is a tuple of parameter strings (``"a"``, ``"axis="`` with a default, ``"p/"``
positional-only, ``"*args"``, ``"k:copy="`` keyword-only, ``"**kwargs"``) or ``None`` when CuPy
exposes no signature. Signatures come from ``inspect.signature`` or, for Cython functions, from
the first line of the docstring (Cython's ``embedsignature``).
"""

from __future__ import annotations

import inspect
import pprint
import re
import sys
import types
from pathlib import Path

_SPLIT = re.compile(r"""("[^"]*"|'[^']*'|[()\[\]{},])""")


def _split_top(text: str) -> list[str]:
    """Split ``text`` at commas that are not inside brackets or quotes."""
    parts, depth, cur = [], 0, ""
    for tok in _SPLIT.split(text):
        if tok in "([{" and tok:
            depth += 1
        elif tok in ")]}" and tok:
            depth -= 1
        if tok == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += tok
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts]


def _from_docstring(obj) -> tuple | None:
    """Parameters from a Cython ``embedsignature`` first docstring line, or None."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    first = doc.splitlines()[0] if doc else ""
    name = getattr(obj, "__name__", "")
    m = re.match(r"^[\w.]*\b" + re.escape(name) + r"\((.*)\)(\s*->.*)?$", first)
    if not name or not m:
        return None
    params, kw_only = [], False
    for part in _split_top(m.group(1)):
        if part in ("self", "cls"):
            continue
        if part == "*":
            kw_only = True
            continue
        if part == "/":
            params = [p if p.endswith("/") else p + "/" for p in params]
            continue
        if part.startswith("**"):
            params.append("**" + part[2:].split()[-1])
            continue
        if part.startswith("*"):
            params.append("*" + part[1:].split()[-1])
            kw_only = True
            continue
        decl, eq, _ = part.partition("=")
        pname = decl.split()[-1].strip()
        if pname == "self":
            continue
        params.append(("k:" if kw_only else "") + pname + ("=" if eq else ""))
    return tuple(params)


def _params(obj) -> tuple | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return _from_docstring(obj)
    out = []
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        default = "=" if p.default is not inspect.Parameter.empty else ""
        if p.kind is p.POSITIONAL_ONLY:
            out.append(p.name + default + "/")
        elif p.kind is p.VAR_POSITIONAL:
            out.append("*" + p.name)
        elif p.kind is p.KEYWORD_ONLY:
            out.append("k:" + p.name + default)
        elif p.kind is p.VAR_KEYWORD:
            out.append("**" + p.name)
        else:
            out.append(p.name + default)
    return tuple(out)


def _spec(value, ufunc_type) -> tuple:
    if isinstance(value, ufunc_type):
        return ("ufunc", value.nin, value.nout)
    if isinstance(value, types.ModuleType):
        return ("module",)
    if isinstance(value, type) or not callable(value):
        return ("value",)
    return ("function", _params(value))


def _namespace(obj, ufunc_type) -> dict:
    return {
        n: _spec(getattr(obj, n), ufunc_type)
        for n in sorted(dir(obj))
        # `from __future__ import annotations` leaves a name that is no API
        if not n.startswith("_") and hasattr(obj, n) and not _is_future(getattr(obj, n))
    }


def _is_future(value) -> bool:
    return type(value).__module__ == "__future__"


def _class(cls) -> dict:
    out = {}
    for n in sorted(dir(cls)):
        if n.startswith("_"):
            continue
        raw = inspect.getattr_static(cls, n)
        if isinstance(raw, property) or type(raw).__name__ == "getset_descriptor":
            out[n] = ("attribute",)
        elif callable(getattr(cls, n)):
            out[n] = ("function", _params(getattr(cls, n)))
        else:
            out[n] = ("attribute",)
    return out


def main() -> None:
    # This folder holds the stand-in's `cupy`: take it off the path to import the real one.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != here]
    import cupy
    import cupy._core.flags
    import cupy.lib.stride_tricks
    import cupyx
    import cupyx.profiler
    import cupyx.scipy.special

    uf = cupy.ufunc
    tables = {
        "CUPY": _namespace(cupy, uf),
        "NDARRAY": _class(cupy.ndarray),
        # What `ndarray.flags` gives (no array is needed: the class is importable without a GPU).
        "NDARRAY_FLAGS": _class(cupy._core.flags.Flags),
        "LINALG": _namespace(cupy.linalg, uf),
        "FFT": _namespace(cupy.fft, uf),
        "RANDOM": _namespace(cupy.random, uf),
        "RANDOM_GENERATOR": _class(cupy.random.Generator),
        "RANDOM_STATE": _class(cupy.random.RandomState),
        "STRIDE_TRICKS": _namespace(cupy.lib.stride_tricks, uf),
        "TESTING": _namespace(cupy.testing, uf),
        "CUDA": _namespace(cupy.cuda, uf),
        "CUPYX": _namespace(cupyx, uf),
        "CUPYX_PROFILER": _namespace(cupyx.profiler, uf),
        "CUPYX_SCIPY_SPECIAL": _namespace(cupyx.scipy.special, uf),
    }
    # A lazy module attribute (cupy/random/__init__.py's __getattr__), so not in dir().
    tables["RANDOM"]["Generator"] = ("value",)
    w = sys.stdout.write
    w(f'"""The API of CuPy {cupy.__version__}, as ``gen_cupy_api.py`` read it from the installed\n')
    w("package (generated: do not edit; regenerate with that script for another CuPy version).\n")
    w('See the script\'s docstring for the format."""\n\n')
    w(f"VERSION = {cupy.__version__!r}\n")
    for name, table in tables.items():
        w(f"\n{name} = {pprint.pformat(table, width=100, compact=True)}\n")


if __name__ == "__main__":
    main()
