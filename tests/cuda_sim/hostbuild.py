"""Build a ``kernels/cuda/*.cu`` source as host C++ and launch its kernels on the CPU.

``build(cu_path, name_expressions)`` compiles the source with ``shim.h`` (``__global__`` and
friends defined away, ``threadIdx``/``blockIdx``/``blockDim``/``gridDim`` as globals) plus one
generated ``extern "C"`` launcher per name expression that loops over every block and thread of
the grid. Libraries are cached by content hash, so a source is compiled once per machine.

``HostModule.get_function(expr)`` returns a ``HostFunction`` whose call ``f(grid, block, args)``
mirrors ``cupy.RawKernel.__call__`` and checks every argument the way the GPU would read it: CuPy
sends a Python ``int`` as a 64-bit ``long long`` and a ``float`` as a ``double``, and a kernel
ignores strides, so an ``int``/``float`` parameter needs ``numpy.int32``/``numpy.float32`` and a
pointer needs a C-contiguous device array of the pointee's dtype. On a GPU a mismatch is silent
garbage; here it is a ``KernelArgumentError`` naming the kernel, the parameter and the value.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import ml_dtypes
import numpy as np

SHIM_PATH = Path(__file__).with_name("shim.h")
CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ("-O1", "-shared", "-fPIC", "-fvisibility=hidden", "-fno-strict-aliasing")
DEFAULT_STD = "c++14"  # what cupy.RawModule uses when options name no -std (CuPy 13)
# Bytes of canary placed before and after every pointer argument (see HostFunction).
GUARD_BYTES = 1024


class HostBuildError(RuntimeError):
    """The host C++ compiler rejected the source."""


class KernelConventionError(ValueError):
    """The source breaks the conventions that make it runnable on the host (and under CuPy)."""


class KernelArgumentError(TypeError):
    """A launch argument that the GPU would read differently from what was meant."""


class KernelLaunchError(ValueError):
    """A launch configuration that CUDA rejects, or a kernel that wrote out of bounds."""


# ---------------------------------------------------------------- C types -----------------------

# C scalar type -> the numpy dtype whose bytes the kernel reads for it.
C_DTYPES: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "char": np.dtype(np.int8),
    "signed char": np.dtype(np.int8),
    "unsigned char": np.dtype(np.uint8),
    "short": np.dtype(np.int16),
    "unsigned short": np.dtype(np.uint16),
    "int": np.dtype(np.int32),
    "unsigned int": np.dtype(np.uint32),
    "long": np.dtype(np.int64),
    "unsigned long": np.dtype(np.uint64),
    "long long": np.dtype(np.int64),
    "unsigned long long": np.dtype(np.uint64),
    "size_t": np.dtype(np.uint64),
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    # CUDA's 16-bit floats (cuda_fp16.h, cuda_bf16.h); shim.h defines them in software.
    "__half": np.dtype(np.float16),
    "__nv_bfloat16": np.dtype(ml_dtypes.bfloat16),
}
# The only headers a source may include: CUDA's half and bfloat16 types, which NVRTC finds on
# CuPy's include path and which the host build takes from shim.h instead: the #include line
# becomes the shim macros that define what the header does (cuda_bf16.h includes cuda_fp16.h),
# each once, so a type is there only where its header was included.
ALLOWED_INCLUDES = {
    "cuda_fp16.h": ("TT_SIM_CUDA_FP16",),
    "cuda_bf16.h": ("TT_SIM_CUDA_FP16", "TT_SIM_CUDA_BF16"),
}
_ALLOWED_INCLUDE_RE = re.compile(
    r"^[ \t]*#[ \t]*include[ \t]*<(" + "|".join(map(re.escape, ALLOWED_INCLUDES)) + r")>[ \t]*$",
    re.M,
)
_CTYPES = {
    np.dtype(np.bool_): ctypes.c_bool,
    np.dtype(np.int8): ctypes.c_int8,
    np.dtype(np.uint8): ctypes.c_uint8,
    np.dtype(np.int16): ctypes.c_int16,
    np.dtype(np.uint16): ctypes.c_uint16,
    np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.uint32): ctypes.c_uint32,
    np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.uint64): ctypes.c_uint64,
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
    # A 16-bit float struct is passed by value as its 16 bits (an INTEGER-class argument).
    np.dtype(np.float16): ctypes.c_uint16,
    np.dtype(ml_dtypes.bfloat16): ctypes.c_uint16,
}
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict"}
_SYNONYMS = {
    "signed": "int",
    "signed int": "int",
    "unsigned": "unsigned int",
    "short int": "short",
    "signed short": "short",
    "unsigned short int": "unsigned short",
    "long int": "long",
    "signed long": "long",
    "unsigned long int": "unsigned long",
    "long long int": "long long",
    "signed long long": "long long",
    "unsigned long long int": "unsigned long long",
}
_SCALAR_HINT = {
    "int": "numpy.int32(...)",
    "unsigned int": "numpy.uint32(...)",
    "float": "numpy.float32(...)",
    "long long": "a Python int or numpy.int64(...)",
    "long": "a Python int or numpy.int64(...)",
    "double": "a Python float or numpy.float64(...)",
    "bool": "a Python bool or numpy.bool_(...)",
    "__half": "numpy.float16(...)",
    "__nv_bfloat16": "ml_dtypes.bfloat16(...)",
}


@dataclass(frozen=True)
class Param:
    """One kernel parameter, template arguments substituted."""

    name: str
    ctype: str  # normalised base type: "float", "int", "long long", ...
    pointer: bool
    const: bool  # const pointee (for pointers) or const value

    @property
    def dtype(self) -> np.dtype:
        return C_DTYPES[self.ctype]

    def __str__(self) -> str:
        const = "const " if self.const else ""
        star = "*" if self.pointer else ""
        return f"{const}{self.ctype}{star} {self.name}"


@dataclass(frozen=True)
class Signature:
    """The C signature of one kernel as a name expression instantiates it."""

    name_expr: str
    params: tuple[Param, ...]

    def __str__(self) -> str:
        return f"{self.name_expr}({', '.join(str(p) for p in self.params)})"


# ---------------------------------------------------------------- parsing -----------------------

_COMMENT_RE = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_KERNEL_RE = re.compile(
    r"(?:template\s*<(?P<tparams>[^<>]*)>\s*)?"
    r"(?P<externc>extern\s*\"C\"\s*)?"
    r"(?:static\s+)?__global__\s+"
    r"(?:__launch_bounds__\s*\([^()]*\)\s*)?void\s+"
    r"(?:__launch_bounds__\s*\([^()]*\)\s*)?"
    r"(?P<name>[A-Za-z_]\w*)\s*\("
)
_NAME_EXPR_RE = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:<(.*)>)?\s*$", re.S)

# (pattern, why) pairs: what breaks the host build's sequential threads, or NVRTC (no headers).
_FORBIDDEN = (
    (r"^\s*#\s*include\b", "#include (NVRTC has no host headers; the convention is no includes)"),
    (r"\b__shared__\b", "shared memory (threads run one after the other on the host)"),
    (r"\b__syncthreads\w*\b|\b__syncwarp\b", "barriers (threads run one after the other)"),
    (r"\batomic[A-Z]\w*\s*\(", "atomics (kernels are gather-style by convention)"),
    (r"\b__shfl\w*\s*\(|\b__ballot\w*\s*\(", "warp intrinsics"),
    (r"\bstd\s*::", "std:: (NVRTC has no C++ standard library)"),
    (
        r"\b(INFINITY|NAN|HUGE_VALF?|M_PI|M_E|M_SQRT2|FLT_MAX|FLT_MIN|FLT_EPSILON|DBL_MAX|"
        r"DBL_MIN|DBL_EPSILON|INT_MAX|INT_MIN|LLONG_MAX|CUDART_\w+)\b",
        "a macro from a host header NVRTC does not have (write the value, e.g. "
        "__int_as_float(0x7f800000) for +inf, or pass it in as a parameter)",
    ),
)


def _blank_allowed_includes(source: str) -> str:
    """``source`` with the includes of :data:`ALLOWED_INCLUDES` blanked, line numbers kept."""
    return _ALLOWED_INCLUDE_RE.sub("", source)


def _expand_allowed_includes(source: str) -> str:
    """``source`` with each include of :data:`ALLOWED_INCLUDES` replaced, on its own line, by the
    shim.h macros defining what that header defines and an earlier one did not (an include
    guard's effect), line numbers kept."""
    done: set[str] = set()

    def expand(m: re.Match) -> str:
        macros = [x for x in ALLOWED_INCLUDES[m.group(1)] if x not in done]
        done.update(macros)
        return " ".join(macros)

    return _ALLOWED_INCLUDE_RE.sub(expand, source)


def strip_comments(source: str) -> str:
    """``source`` with comments blanked out, line numbers kept."""
    return _COMMENT_RE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)


def check_conventions(source: str, label: str = "<source>") -> None:
    """Raise ``KernelConventionError`` listing every construct the conventions forbid."""
    code = _blank_allowed_includes(strip_comments(source))
    problems = []
    for pattern, why in _FORBIDDEN:
        for m in re.finditer(pattern, code, re.M):
            line = code.count("\n", 0, m.start()) + 1
            problems.append(f"{label}:{line}: {m.group(0).strip()!r}: {why}")
    if problems:
        raise KernelConventionError(
            "CUDA source breaks the kernel conventions:\n  " + "\n  ".join(problems)
        )


@dataclass(frozen=True)
class _KernelDef:
    name: str
    tparams: tuple[str, ...]  # template parameter names, () for a non-template
    params_text: str
    extern_c: bool


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _closing_paren(code: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] == "(":
            depth += 1
        elif code[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise KernelConventionError(f"unbalanced parentheses in kernel parameter list at {open_at}")


def find_kernels(source: str) -> dict[str, _KernelDef]:
    """Every ``__global__`` function of ``source`` by name (declarations and definitions)."""
    code = strip_comments(source)
    kernels: dict[str, _KernelDef] = {}
    for m in _KERNEL_RE.finditer(code):
        close = _closing_paren(code, m.end() - 1)
        tparams = ()
        if m.group("tparams") is not None:
            tparams = tuple(
                re.findall(r"(\w+)\s*(?:=[^,]*)?$", p)[0]
                for p in _split_top_level(m.group("tparams"))
            )
        kdef = _KernelDef(m.group("name"), tparams, code[m.end() : close], bool(m.group("externc")))
        old = kernels.get(kdef.name)
        if old is not None and (old.tparams, _normal_space(old.params_text)) != (
            kdef.tparams,
            _normal_space(kdef.params_text),
        ):
            raise KernelConventionError(f"kernel {kdef.name!r} is overloaded; use distinct names")
        kernels.setdefault(kdef.name, kdef)
    return kernels


def _normal_space(text: str) -> str:
    return " ".join(re.findall(r"\w+|[^\s\w]", text))


def parse_name_expression(expr: str) -> tuple[str, tuple[str, ...]]:
    """``"im2col<float>"`` -> ``("im2col", ("float",))``; ``"k"`` -> ``("k", ())``."""
    m = _NAME_EXPR_RE.match(expr)
    if m is None:
        raise KernelConventionError(f"cannot parse name expression {expr!r}")
    targs = tuple(_split_top_level(m.group(2))) if m.group(2) is not None else ()
    return m.group(1), targs


def _parse_param(text: str, kernel: str, index: int) -> Param:
    tokens = re.findall(r"[A-Za-z_]\w*|\*|&|\[|\]", text)
    if "&" in tokens or "[" in tokens or tokens.count("*") > 1:
        raise KernelConventionError(
            f"kernel {kernel!r} parameter {index} {text!r}: only T*, const T* and scalars are "
            "supported"
        )
    pointer = "*" in tokens
    star = tokens.index("*") if pointer else len(tokens)
    const = "const" in tokens[:star] if pointer else "const" in tokens
    if pointer:
        type_words = [t for t in tokens[:star] if t not in _QUALIFIERS]
        name_words = [t for t in tokens[star + 1 :] if t not in _QUALIFIERS]
    else:
        words = [t for t in tokens if t not in _QUALIFIERS]
        known = set(" ".join(C_DTYPES).split()) | {"signed"}
        name_words = [words[-1]] if len(words) > 1 and words[-1] not in known else []
        type_words = words[: len(words) - len(name_words)]
    ctype = " ".join(type_words)
    ctype = _SYNONYMS.get(ctype, ctype)
    if ctype not in C_DTYPES:
        raise KernelConventionError(
            f"kernel {kernel!r} parameter {index} {text!r}: unsupported type {ctype!r} "
            f"(supported: {', '.join(C_DTYPES)} and pointers to them)"
        )
    name = name_words[0] if name_words else f"arg{index}"
    return Param(name=name, ctype=ctype, pointer=pointer, const=const)


def signature(source: str, name_expr: str, kernels: dict | None = None) -> Signature:
    """The parameter list of ``name_expr`` with its template arguments substituted."""
    kernels = find_kernels(source) if kernels is None else kernels
    name, targs = parse_name_expression(name_expr)
    if name not in kernels:
        raise KernelConventionError(
            f"no __global__ kernel named {name!r} in the source (found: {', '.join(kernels)})"
        )
    kdef = kernels[name]
    if len(targs) != len(kdef.tparams):
        if kdef.tparams and not targs:
            hint = f"; name it with its template arguments, e.g. '{name}<float>'"
        else:
            hint = ""
        raise KernelConventionError(
            f"name expression {name_expr!r} gives {len(targs)} template argument(s), kernel "
            f"{name!r} takes {len(kdef.tparams)}{hint}"
        )
    text = kdef.params_text
    for tparam, targ in zip(kdef.tparams, targs, strict=True):
        text = re.sub(rf"\b{re.escape(tparam)}\b", targ, text)
    params = tuple(
        _parse_param(p, name_expr, i)
        for i, p in enumerate(_split_top_level(text))
        if p.strip() != "void"
    )
    return Signature(name_expr=name_expr.strip(), params=params)


def extern_c_kernels(source: str) -> list[str]:
    """Names of the non-template ``extern "C"`` kernels (retrievable without name expressions)."""
    return [k.name for k in find_kernels(source).values() if k.extern_c and not k.tparams]


# ---------------------------------------------------------------- building ----------------------


def _launcher(index: int, sig: Signature) -> str:
    decls = ["unsigned int gx, unsigned int gy, unsigned int gz"]
    decls.append("unsigned int bx, unsigned int by, unsigned int bz")
    call = []
    for i, p in enumerate(sig.params):
        if p.pointer:
            decls.append(f"void* a{i}")
            call.append(f"({'const ' if p.const else ''}{p.ctype}*)a{i}")
        else:
            decls.append(f"{p.ctype} a{i}")
            call.append(f"a{i}")
    return f"""
extern "C" __attribute__((visibility("default"))) void tt_launch_{index}(
    {", ".join(decls)}) {{
    gridDim = {{gx, gy, gz}};
    blockDim = {{bx, by, bz}};
    for (unsigned int z = 0; z < gz; ++z)
    for (unsigned int y = 0; y < gy; ++y)
    for (unsigned int x = 0; x < gx; ++x) {{
        blockIdx = {{x, y, z}};
        for (unsigned int tz = 0; tz < bz; ++tz)
        for (unsigned int ty = 0; ty < by; ++ty)
        for (unsigned int tx = 0; tx < bx; ++tx) {{
            threadIdx = {{tx, ty, tz}};
            {sig.name_expr}({", ".join(call)});
        }}
    }}
}}
"""


def translation_unit(source: str, signatures: Sequence[Signature], label: str) -> str:
    """The C++ file compiled for the host: shim, the source unchanged, the launchers."""
    shim = SHIM_PATH.read_text()
    source = _expand_allowed_includes(source)  # shim.h's half and bfloat16 types
    parts = [f'#line 1 "{SHIM_PATH}"\n', shim, f'\n#line 1 "{label}"\n', source]
    parts.append('\n#line 1 "<hostbuild launchers>"\n')
    parts.extend(_launcher(i, sig) for i, sig in enumerate(signatures))
    return "".join(parts)


def cache_dir() -> Path:
    """Where compiled libraries live: ``$TENSORTAPE_HOSTBUILD_CACHE`` or ~/.cache/tensortape."""
    env = os.environ.get("TENSORTAPE_HOSTBUILD_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tensortape" / "hostbuild"


def _compile(tu: str, std: str) -> Path:
    flags = (*CXXFLAGS, f"-std={std}")
    key = hashlib.sha256("\0".join((CXX, *flags, tu)).encode()).hexdigest()[:24]
    out_dir = cache_dir()
    so_path = out_dir / f"{key}.so"
    if so_path.exists():
        return so_path
    out_dir.mkdir(parents=True, exist_ok=True)
    # Compile to a private name, then rename: concurrent test processes never see half a file.
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src = Path(tmp) / f"{key}.cpp"
        src.write_text(tu)
        tmp_so = Path(tmp) / f"{key}.so"
        cmd = [CXX, *flags, "-x", "c++", str(src), "-o", str(tmp_so)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise HostBuildError(
                f"host build failed ({' '.join(cmd[:-4])} ...):\n{proc.stderr.strip()}"
            )
        os.replace(tmp_so, so_path)
    return so_path


def _std_from_options(options: Iterable[str]) -> str:
    for opt in options:
        m = re.match(r"^-?-std=(.+)$", opt)
        if m:
            return m.group(1)
    return DEFAULT_STD


_LIBS: dict[Path, ctypes.CDLL] = {}
_LAUNCH_LOCK = threading.Lock()  # the shim's thread/block indices are library globals


def read_source(path: Path) -> str:
    """A ``kernels/cuda`` source as its kernels are compiled (its ``tt_common.cuh`` include
    expanded, ``kernels.launch.source_code``); any other file as it is."""
    from kernels import launch

    if path.resolve().parent == launch.CUDA_DIR:
        return launch.source_code(path.name)
    return path.read_text()


def build(
    cu_path: str | os.PathLike | None,
    name_expressions: Sequence[str] = (),
    *,
    code: str | None = None,
    options: Sequence[str] = (),
    label: str | None = None,
) -> "HostModule":
    """Compile ``cu_path`` (or ``code``) for the host with launchers for ``name_expressions``.

    Non-template ``extern "C"`` kernels get a launcher whether named or not, as they are
    retrievable by plain name from a ``cupy.RawModule``.
    """
    if (cu_path is None) == (code is None):
        raise TypeError("give exactly one of cu_path and code")
    if code is None:
        code = read_source(Path(cu_path))
        label = label or str(Path(cu_path).resolve())
    label = label or "<cuda source>"
    check_conventions(code, label)
    kernels = find_kernels(code)
    exprs = list(dict.fromkeys([*name_expressions, *extern_c_kernels(code)]))
    sigs = [signature(code, e, kernels) for e in exprs]
    so_path = _compile(translation_unit(code, sigs, label), _std_from_options(options))
    if so_path not in _LIBS:
        _LIBS[so_path] = ctypes.CDLL(str(so_path))
    return HostModule(_LIBS[so_path], sigs, label, so_path)


# ---------------------------------------------------------------- launching ---------------------


class HostModule:
    """A compiled source: ``get_function(name_expr)`` as on ``cupy.RawModule``."""

    def __init__(self, lib: ctypes.CDLL, sigs: Sequence[Signature], label: str, so_path: Path):
        self.label = label
        self.so_path = so_path
        self.signatures = {s.name_expr: s for s in sigs}
        self._functions = {}
        for i, sig in enumerate(sigs):
            fn = getattr(lib, f"tt_launch_{i}")
            fn.restype = None
            fn.argtypes = [ctypes.c_uint] * 6 + [
                ctypes.c_void_p if p.pointer else _CTYPES[p.dtype] for p in sig.params
            ]
            self._functions[sig.name_expr] = HostFunction(sig, fn, label)

    def get_function(self, name_expr: str) -> "HostFunction":
        key = name_expr.strip()
        if key not in self._functions:
            raise KeyError(
                f"{name_expr!r} is not a kernel of {self.label}: built name expressions are "
                f"{sorted(self._functions)} (a template kernel must be listed in "
                "name_expressions, as with cupy.RawModule)"
            )
        return self._functions[key]


def is_device_array(x: Any) -> bool:
    """Whether ``x`` is a CuPy stand-in array (duck-typed, so no import cycle)."""
    return getattr(type(x), "__cuda_sim_device_array__", False) is True


def _describe(x: Any) -> str:
    if is_device_array(x):
        flags = "C-contiguous" if x._host.flags.c_contiguous else f"strides {x.strides}"
        return f"device array {x.dtype} shape {x.shape} ({flags})"
    if isinstance(x, np.ndarray):
        return f"host numpy.ndarray {x.dtype} shape {x.shape}"
    if isinstance(x, np.generic):
        return f"numpy.{type(x).__name__}({x!r})"
    return f"Python {type(x).__name__} {x!r}"


def _grid_tuple(value: Any, what: str, limits: tuple[int, int, int]) -> tuple[int, int, int]:
    if not isinstance(value, tuple):
        raise TypeError(
            f"{what} must be a tuple like (n,), got {type(value).__name__} {value!r} "
            "(cupy's Function.__call__ is typed `tuple grid, tuple block`)"
        )
    if not 1 <= len(value) <= 3 or not all(isinstance(v, (int, np.integer)) for v in value):
        raise TypeError(f"{what} must be a tuple of 1 to 3 ints, got {value!r}")
    # CuPy launches max(1, n) in each dimension: an empty grid still runs one block.
    dims = tuple(max(1, int(v)) for v in (*value, 1, 1)[:3])
    if any(d > lim for d, lim in zip(dims, limits, strict=True)):
        raise KernelLaunchError(f"{what} {value!r} exceeds CUDA's limits {limits}")
    return dims


class HostFunction:
    """One kernel launcher; called like a ``cupy.RawKernel``."""

    def __init__(self, sig: Signature, fn: Any, label: str):
        self.signature = sig
        self.name = sig.name_expr
        self._fn = fn
        self._label = label

    def __repr__(self) -> str:
        return f"<HostFunction {self.signature} from {self._label}>"

    def __call__(
        self, grid: tuple, block: tuple, args: Sequence[Any], shared_mem: int = 0, stream=None
    ) -> None:
        grid3 = _grid_tuple(grid, f"grid of {self.name}", (2**31 - 1, 65535, 65535))
        block3 = _grid_tuple(block, f"block of {self.name}", (1024, 1024, 64))
        if block3[0] * block3[1] * block3[2] > 1024:
            raise KernelLaunchError(
                f"block {block!r} of {self.name} has more than 1024 threads "
                "(CUDA_ERROR_INVALID_VALUE on a GPU)"
            )
        if shared_mem:
            raise KernelLaunchError(
                f"{self.name}: shared_mem={shared_mem}, but kernels use no shared memory"
            )
        args = tuple(args)
        params = self.signature.params
        if len(args) != len(params):
            raise KernelArgumentError(
                f"kernel {self.signature} takes {len(params)} argument(s), got {len(args)}"
            )
        values = [self._convert(i, p, a) for i, (p, a) in enumerate(zip(params, args, strict=True))]
        guards = _Guards(params, args, self.name) if _guard_enabled() else None
        if guards is not None:
            values = guards.substitute(values)
        with _LAUNCH_LOCK:
            self._fn(*grid3, *block3, *values)
        if guards is not None:
            guards.finish()

    def _error(self, i: int, p: Param, arg: Any, why: str) -> KernelArgumentError:
        return KernelArgumentError(
            f"kernel {self.name} parameter {i} '{p.name}' ({p}): got {_describe(arg)}; {why}"
        )

    def _convert(self, i: int, p: Param, arg: Any) -> Any:
        if p.pointer:
            return self._pointer(i, p, arg)
        return self._scalar(i, p, arg)

    def _pointer(self, i: int, p: Param, arg: Any) -> int | None:
        if arg is None:
            return None  # CuPy passes None as a null pointer
        if not is_device_array(arg):
            hint = (
                "a host array cannot be read by the GPU; copy it with cupy.asarray(...)"
                if isinstance(arg, np.ndarray)
                else "a pointer parameter needs a device array"
            )
            return self._bad(i, p, arg, hint)
        host = arg._host
        if host.dtype != p.dtype:
            return self._bad(
                i,
                p,
                arg,
                f"{'const ' if p.const else ''}{p.ctype}* reads {p.dtype}; "
                f"convert with .astype(cupy.{p.dtype})",
            )
        if not host.flags.c_contiguous:
            return self._bad(
                i, p, arg, "a kernel ignores strides; pass cupy.ascontiguousarray(...)"
            )
        return host.ctypes.data

    def _scalar(self, i: int, p: Param, arg: Any) -> Any:
        want = p.dtype
        hint = f"pass {_SCALAR_HINT.get(p.ctype, f'numpy.{want}(...)')}"
        if arg is None or is_device_array(arg):
            return self._bad(i, p, arg, f"a {p.ctype} parameter is passed by value; {hint}")
        if isinstance(arg, np.ndarray):
            if arg.size != 1:
                return self._bad(i, p, arg, "CuPy only passes size-1 numpy arrays by value")
            sent = arg.dtype
        elif isinstance(arg, np.generic):
            sent = arg.dtype
        elif isinstance(arg, bool):
            sent = np.dtype(np.bool_)
        elif isinstance(arg, int):
            sent = np.dtype(np.int64)
        elif isinstance(arg, float):
            sent = np.dtype(np.float64)
        else:
            return self._bad(i, p, arg, f"CuPy cannot pass this type; {hint}")
        if sent != want:
            why = f"CuPy sends it as {sent} ({sent.itemsize} bytes) but the kernel reads {want}"
            return self._bad(i, p, arg, f"{why}; {hint}")
        value = np.asarray(arg).reshape(())
        if value.dtype.itemsize == 2 and value.dtype.kind not in "iub":
            return value.view(np.uint16).item()  # a 16-bit float goes by its bits
        return value.item()

    def _bad(self, i: int, p: Param, arg: Any, why: str) -> Any:
        raise self._error(i, p, arg, why)


def _guard_enabled() -> bool:
    return os.environ.get("TENSORTAPE_SIM_GUARD", "1") != "0"


def _canary(dtype: np.dtype, index: int) -> np.ndarray:
    """One element of guard filler for argument ``index``: a NaN with a payload for floats, an
    odd large value for integers; distinct per argument, so copying from one argument's guard
    into another's is seen too."""
    tag = 0x1A0 + index
    if dtype == np.float32:
        bits = np.array([0x7FC00000 | tag], np.uint32)
    elif dtype == np.float64:
        bits = np.array([0x7FF8000000000000 | tag], np.uint64)
    elif dtype == np.float16:
        bits = np.array([0x7E00 | tag], np.uint16)
    elif dtype == np.dtype(ml_dtypes.bfloat16):
        bits = np.array([0x7FC0 | (tag & 0x3F)], np.uint16)
    else:
        n = dtype.itemsize
        bits = np.frombuffer(bytes([0xA5, tag & 0xFF] * 4)[:n], np.dtype(f"u{n}"))
    return bits.view(np.uint8)


class _Guards:
    """Run a launch on copies of the pointer arguments framed by guard bytes.

    A kernel that writes outside an argument (the usual off-by-one) changes a guard and the
    launch raises instead of corrupting the heap; a stray read of a float argument reads NaN.
    Arguments that overlap another pointer argument are passed as they are (aliasing kept).
    """

    def __init__(self, params: Sequence[Param], args: Sequence[Any], name: str):
        self.name = name
        self.items: list[tuple[int, Param, np.ndarray, np.ndarray, np.ndarray]] = []
        arrays = [
            (i, p, a._host)
            for i, (p, a) in enumerate(zip(params, args, strict=True))
            if p.pointer and a is not None
        ]
        for i, p, host in arrays:
            if any(j != i and np.may_share_memory(host, other) for j, _, other in arrays):
                continue
            pattern = _canary(host.dtype, i)
            guard = np.tile(pattern, GUARD_BYTES // pattern.size)
            buf = np.concatenate([guard, host.reshape(-1).view(np.uint8), guard])
            self.items.append((i, p, host, buf, guard))

    def substitute(self, values: list[Any]) -> list[Any]:
        values = list(values)
        for i, _, _, buf, _ in self.items:
            values[i] = buf.ctypes.data + GUARD_BYTES
        return values

    def finish(self) -> None:
        for i, p, host, buf, guard in self.items:
            before = np.flatnonzero(buf[:GUARD_BYTES] != guard)
            after = np.flatnonzero(buf[GUARD_BYTES + host.nbytes :] != guard)
            if before.size or after.size:
                size = host.itemsize
                lo = -(-(GUARD_BYTES - int(before[0])) // size) if before.size else 0
                hi = -(-(int(after[-1]) + 1) // size) if after.size else 0
                raise KernelLaunchError(
                    f"kernel {self.name} wrote outside parameter {i} '{p.name}' ({p}, "
                    f"{host.size} elements): {lo} element(s) before its start, {hi} past its end"
                )
            if not p.const:
                host.reshape(-1).view(np.uint8)[...] = buf[GUARD_BYTES : GUARD_BYTES + host.nbytes]
