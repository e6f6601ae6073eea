"""How deep one `layers.Conv2d` forward and backward go: frames, files and calls.

    python -m benchmarks.call_depth [--device cpu|cuda] [--verbose]

A ``sys.setprofile`` hook counts, for one forward (and then one backward) of a 3x3, 8 -> 8
channel Conv2d on a (2, 8, 16, 16) input, after a warm-up call:

- frames: the deepest stack of the project's Python frames below the call (NumPy's own
  Python wrappers are counted apart, in "all frames");
- in files: the project files on that deepest stack, the first one reached when several are
  as deep (Chainer's conv: about 6 frames in 4);
- files: the distinct project source files touched at all (all files, NumPy's too, apart);
- calls: Python function calls (all), and calls into C (NumPy/CuPy functions, builtins).

The third row is the functional op alone, ``F.conv2d`` on the same tensors: where a count of
Chainer's ``F.convolution_2d`` starts (no layer, no ``Module.__call__``).

The issue's goal for the conv path is a forward in at most 6 frames across at most 4 files.
``--verbose`` prints the deepest stack and the files.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

import engine
import engine.functional as F
import layers


class _Counter:
    """A profile hook: depth, files and call counts of everything below one call."""

    def __init__(self) -> None:
        self.depth = 0
        self.max_depth = 0
        self.own_depth = 0
        self.max_own_depth = 0
        self.own: list[bool] = []
        self.deepest_own: list[str] = []
        # Each project function's depth (in project frames) when it was first entered.
        self.entered: dict[str, int] = {}
        self.calls = 0
        self.c_calls = 0
        self.files: set[str] = set()
        self.stack: list[str] = []
        self.deepest: list[str] = []

    def __call__(self, frame, event: str, arg) -> None:
        if event == "call":
            self.depth += 1
            self.calls += 1
            code = frame.f_code
            self.files.add(code.co_filename)
            own = _is_project(code.co_filename)
            self.own.append(own)
            self.own_depth += own
            name = f"{_short(code.co_filename)}:{code.co_name}"
            if own:
                self.entered.setdefault(name, self.own_depth)
            if self.own_depth > self.max_own_depth:
                self.max_own_depth = self.own_depth
                self.deepest_own = [f for f, o in zip(self.stack + [name], self.own) if o]
            self.stack.append(name)
            if self.depth > self.max_depth:
                self.max_depth = self.depth
                self.deepest = list(self.stack)
        elif event == "return":
            self.depth -= 1
            self.stack.pop()
            self.own_depth -= self.own.pop()
        elif event == "c_call":
            self.c_calls += 1


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# The interpreter's own trees: `make` puts the virtualenv inside the checkout (.venv/), and
# NumPy's Python wrappers there are not project frames (CI counted them: one frame too many).
_INSTALLED = tuple({os.path.join(os.path.abspath(p), "") for p in (sys.prefix, sys.base_prefix)})


def _is_project(path: str) -> bool:
    return path.startswith(ROOT) and not path.startswith(_INSTALLED)


def _short(path: str) -> str:
    return os.path.relpath(path, ROOT) if path.startswith(ROOT) else path


def _own_files(c: _Counter) -> set[str]:
    return {f for f in c.files if _is_project(f)}


def measure(fn: Callable[[], object]) -> _Counter:
    """Counts one call of ``fn`` (its own frame excluded: depth 1 is what fn calls)."""
    counter = _Counter()
    sys.setprofile(counter)
    try:
        fn()
    finally:
        sys.setprofile(None)
    # setprofile(None) itself is seen as a C call; the hook's first frame is fn.
    counter.c_calls -= 1
    counter.max_depth -= 1
    counter.max_own_depth -= 1
    counter.files.discard(fn.__code__.co_filename)
    counter.calls -= 1
    counter.deepest = counter.deepest[1:]
    counter.deepest_own = counter.deepest_own[1:]
    counter.entered = {k: d - 1 for k, d in counter.entered.items() if d > 1}
    return counter


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks.call_depth", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    engine.manual_seed(0)
    conv = layers.Conv2d(8, 8, 3, padding=1).to(args.device)
    x = engine.randn(2, 8, 16, 16, device=args.device, requires_grad=True)
    conv(x).sum().backward()  # warm-up: imports, kernel compilation, workspace

    out: dict[str, object] = {}

    def forward() -> None:
        out["y"] = conv(x)

    fwd = measure(forward)
    loss = out["y"].sum()

    def functional() -> None:
        F.conv2d(x, conv.weight, conv.bias, 1, 1)

    # The op without the layer: where Chainer's count starts (F.convolution_2d).
    fn = measure(functional)

    def backward() -> None:
        loss.backward()

    # The sum's own backward is counted too: it is one small Function on top.
    bwd = measure(backward)
    print(f"layers.Conv2d(8, 8, 3, padding=1) on {args.device}, input (2, 8, 16, 16)")
    print(f"{'pass':<10}{'frames':>8}{'in files':>10}{'files':>7}{'all frames':>12}"
          f"{'all files':>11}{'calls':>7}{'C calls':>9}")  # fmt: skip
    for name, c in (("forward", fwd), ("backward", bwd), ("F.conv2d", fn)):
        path_files = len({f.split(":")[0] for f in c.deepest_own})
        print(
            f"{name:<10}{c.max_own_depth:>8}{path_files:>10}{len(_own_files(c)):>7}"
            f"{c.max_depth:>12}{len(c.files):>11}{c.calls:>7}{c.c_calls:>9}"
        )
    if args.verbose:
        for name, c in (("forward", fwd), ("backward", bwd), ("F.conv2d", fn)):
            print(f"\n{name}: deepest stack of project frames")
            for i, f in enumerate(c.deepest_own, 1):
                print(f"  {i:2d} {f}")
            print(f"{name}: kernels entered, at the depth of their first call")
            for d, f in sorted((d, f) for f, d in c.entered.items() if f.startswith("kernels/")):
                print(f"  {d:2d} {f}")
            print(f"{name}: files")
            for f in sorted(_short(f) for f in c.files):
                print(f"  {f}")


if __name__ == "__main__":
    main()
