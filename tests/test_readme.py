"""The README's quickstart runs as written and learns."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_code() -> str:
    section = README.read_text().split("## Quickstart", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quickstart_runs_and_reaches_high_accuracy(capsys):
    exec(compile(quickstart_code(), "README quickstart", "exec"), {})
    accuracy = float(capsys.readouterr().out.split("test accuracy")[1])
    assert accuracy > 0.9
