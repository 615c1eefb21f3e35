"""The CPU allocator settings the `llama3med` command applies (each case in a fresh interpreter: glibc's settings
cannot be undone inside one)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CALL = "from llama3med.runtime import tune_cpu_allocator; print(tune_cpu_allocator())"


def _tuned(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LLAMA3MED_KEEP_MALLOC"}
    result = subprocess.run([sys.executable, "-c", CALL], env={**clean, **env}, capture_output=True, text=True,
                            check=True)
    return result.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_sets_the_thresholds_on_glibc() -> None:
    assert _tuned() == "True"


@pytest.mark.parametrize("env", [{"LLAMA3MED_KEEP_MALLOC": "1"}, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"MALLOC_TRIM_THRESHOLD_": "131072"}])
def test_leaves_malloc_alone_when_asked_or_when_the_user_chose(env: dict[str, str]) -> None:
    assert _tuned(**env) == "False"
