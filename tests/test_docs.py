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
