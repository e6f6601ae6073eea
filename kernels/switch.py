"""A kernel path's on/off switch: read once from an environment variable, then set in code.

``kernels.winograd`` and ``kernels.polyphase`` each hold one and expose its methods as their
``mode_from_env`` / ``mode`` / ``set_mode`` / ``set_enabled``. The mode is read at import, not
per call: the convs ask for it every call (an environment read cost a frame and a dict lookup).
"""

from __future__ import annotations

import contextlib
import os


def _listed(items: list[str]) -> str:
    """Items as "a, b or c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


class Switch:
    """Mode ``value`` (one of ``modes``; "0" off, "1" on): ``env_var``'s at construction (blank
    or unset: ``default``), then :meth:`set_mode` / :meth:`set_enabled`. Read ``value`` in a
    hot path (an attribute, no call)."""

    def __init__(self, env_var: str, modes: tuple[str, ...], default: str):
        self.env_var, self.modes, self.default = env_var, modes, default
        self.value = self.mode_from_env()

    def mode_from_env(self) -> str:
        """The environment variable as a mode (read now); ValueError naming it if invalid."""
        raw = os.environ.get(self.env_var, "").strip() or self.default
        if raw not in self.modes:
            raise ValueError(f"{self.env_var} must be {_listed(list(self.modes))}, got {raw!r}")
        return raw

    def mode(self) -> str:
        """The mode in force."""
        return self.value

    def _as_mode(self, flag: bool | str, name: str) -> str:
        new = {True: "1", False: "0"}.get(flag, flag)  # type: ignore[arg-type]
        if new not in self.modes:
            choices = _listed([repr(m) for m in self.modes])
            raise ValueError(f"{name}: expected a bool, {choices}, got {flag!r}")
        return new

    def set_mode(self, flag: bool | str) -> None:
        """Sets the process's mode from now on: on (True or "1"), off (False or "0") or another
        of the modes. Changing the environment variable after import has no effect."""
        self.value = self._as_mode(flag, "set_mode")

    @contextlib.contextmanager
    def set_enabled(self, flag: bool | str | None):
        """Within the block: on (True or "1"), off (False or "0"), another of the modes, or
        unchanged (None)."""
        new = self.value if flag is None else self._as_mode(flag, "set_enabled")
        before, self.value = self.value, new
        try:
            yield
        finally:
            self.value = before
