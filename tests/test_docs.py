"""docs/design.md is the design file the sources cite, and the paths it names exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"


def _sources():
    for pattern in ("kernels/**/*.cu", "**/*.md", "**/*.py"):
        for path in ROOT.glob(pattern):
            if not {".venv", "node_modules"} & set(path.parts) and path != Path(__file__):
                yield path


def test_sources_cite_the_design_file_that_exists():
    assert DESIGN.is_file()
    for path in _sources():
        text = path.read_text(errors="replace")
        assert "see DESIGN.md" not in text, f"{path.relative_to(ROOT)} cites a missing DESIGN.md"


def test_paths_named_in_the_design_file_exist():
    packages = "engine|kernels|dataio|layers|optimizers|regularizers|generative|tensortape|tests"
    names = re.findall(rf"`((?:{packages}|benchmarks)/[\w/.-]+)`", DESIGN.read_text())
    missing = sorted({n for n in names if not (ROOT / n).exists()})
    assert not missing, f"docs/design.md names paths that do not exist: {missing}"


def _imports(path: Path) -> set[str]:
    """The project modules `path` imports, at the top or inside a function, as dotted names."""
    import ast

    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            stem = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join(stem + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return found


def test_engine_ops_never_import_the_tensor_module():
    # docs/design.md: the ops sit below Tensor and make results through their input's _new.
    for path in sorted((ROOT / "engine" / "ops").glob("*.py")):
        bad = {m for m in _imports(path) if m == "engine.tensor" or m.startswith("engine.tensor.")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


PACKAGES = ("kernels", "dataio", "engine", "layers", "optimizers", "regularizers", "generative",
            "tensortape")  # fmt: skip


def _module_file(name: str) -> Path | None:
    """The source file of project module `name` (a package's __init__.py), else None."""
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if name.split(".")[0] in PACKAGES and candidate.is_file():
            return candidate
    return None


def _import_edges(path: Path) -> set[Path]:
    """The project files `path` imports (lazy imports inside functions included): for each
    imported name the most specific module file (`from .. import x` names module x)."""
    names = _imports(path)
    edges = set()
    for name in names:
        if any(other.startswith(name + ".") and _module_file(other) for other in names):
            continue  # `from a import b` with b a module: the edge goes to b, not to a
        while name and _module_file(name) is None:
            name = name.rpartition(".")[0]
        if name and _module_file(name) != path:
            edges.add(_module_file(name))
    return edges


def test_no_import_circles():
    # docs/design.md: every arrow points down, inside a package as between packages; a circle
    # held together by an import inside a function counts too.
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    graph = {p: _import_edges(p) for p in files}
    done: set[Path] = set()

    def visit(p: Path, trail: list[Path]) -> None:
        for q in sorted(graph.get(p, ())):
            if q in trail:
                loop = " -> ".join(str(f.relative_to(ROOT)) for f in trail[trail.index(q) :] + [q])
                raise AssertionError(f"import circle: {loop}")
            if q not in done:
                visit(q, trail + [q])
        done.add(p)

    for p in files:
        if p not in done:
            visit(p, [p])
