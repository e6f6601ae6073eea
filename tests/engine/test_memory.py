"""engine.memory: the host-memory policy, an explicit call (glibc only)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import memory

ROOT = Path(__file__).resolve().parents[2]

glibc_only = pytest.mark.skipif(
    memory._glibc() is None, reason="the policy applies to glibc's malloc only"
)


def test_env_parsing(monkeypatch):
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    assert memory.cache_mib_from_env() == memory.DEFAULT_CACHE_MIB
    monkeypatch.setenv(memory.ENV_VAR, " 256 ")
    assert memory.cache_mib_from_env() == 256
    monkeypatch.setenv(memory.ENV_VAR, "0")
    assert memory.cache_mib_from_env() == 0
    monkeypatch.setenv(memory.ENV_VAR, "lots")
    with pytest.raises(ValueError, match="TENSORTAPE_HOST_CACHE_MB.*'lots'"):
        memory.cache_mib_from_env()
    monkeypatch.setenv(memory.ENV_VAR, "-1")
    with pytest.raises(ValueError, match=">= 0"):
        memory.cache_mib_from_env()


def test_zero_leaves_malloc_alone():
    assert memory.keep_freed_host_memory(0) is False


@glibc_only
def test_an_import_applies_nothing_and_configure_from_env_does():
    """No process-wide policy as an import side effect; the explicit call applies it."""
    script = (
        "import engine; from engine import memory; assert memory.applied_cache_mib() is None; "
        "assert memory.configure_from_env(); print(memory.applied_cache_mib())"
    )
    env = {**os.environ, memory.ENV_VAR: "256"}
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert out.stdout.split() == ["256"]


_FAULTS_OF_A_STEP = """
import resource, numpy as np, engine
engine.memory.configure_from_env()
def step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    acts = [np.ones(1 << 20, np.float32) for _ in range(8)]  # a step's 4 MiB activations
    del acts  # freed at the end of the step
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
step()
print(min(step() for _ in range(5)))
"""


def _faults_per_step(env_value: str, script: str = _FAULTS_OF_A_STEP, extra_env=None) -> int:
    env = {**os.environ, memory.ENV_VAR: env_value, **(extra_env or {})}
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    return int(out.stdout.split()[-1])


@glibc_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_minflt is Linux's")
def test_reallocating_a_freed_activation_does_not_fault_again():
    """The point of the policy: a block freed and allocated again (every training step does
    this) is served from memory the process already has; with malloc's defaults it is mapped
    afresh and every 4 KiB page faults again."""
    assert _faults_per_step(str(memory.DEFAULT_CACHE_MIB)) < 256
    # malloc's defaults: about half of the 8192 pages are handed back and fault in again
    assert _faults_per_step("0") > 2048


@glibc_only
def test_release_host_memory_frees_the_kernel_scratch():
    from kernels import cpu

    cpu._workspace_array((16,), np.dtype(np.float32))  # the scratch exists before the release
    cpu._pool_scratch((16, np.float32))
    assert cpu._workspace.buf is not None and cpu._workspace.pool is not None
    memory.release_host_memory()  # frees the kernels' scratch and trims; must not raise
    assert cpu._workspace.buf is None and cpu._workspace.pool is None


@glibc_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_minflt is Linux's")
def test_the_policy_as_environment_variables_for_a_process_not_yet_started(monkeypatch):
    """`tensortape launch` gives `malloc_env` to the ranks of a script of your own, which never
    calls configure_from_env: malloc's environment variables alone keep the freed memory."""
    script = _FAULTS_OF_A_STEP.replace("engine.memory.configure_from_env()\n", "")
    assert "configure_from_env" not in script
    for name in memory.malloc_env():  # whatever this shell had set
        monkeypatch.delenv(name, raising=False)
    assert _faults_per_step("0", script) > 2048
    assert _faults_per_step("0", script, memory.malloc_env(memory.DEFAULT_CACHE_MIB)) < 256
    assert memory.malloc_env(0) == {}
    assert memory.malloc_env(256)["MALLOC_TRIM_THRESHOLD_"] == str(256 * 2**20)
