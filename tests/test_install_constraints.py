"""constraints.txt, the versions CI tested, is what scripts/install installs: every dependency
of the project (its extras included) is pinned there once, and the environment the tests run
in holds exactly those versions unless the install said it could not have them."""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not a pin: {line!r}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"pinned twice: {req.name}"
        pins[name] = specs[0].version
    return pins


def test_every_dependency_of_the_project_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("dev", "kernels"):  # what scripts/install installs
        wanted += project["optional-dependencies"][extra]
    pins = _pins()
    missing = [r for r in wanted if canonicalize_name(Requirement(r).name) not in pins]
    assert not missing, f"not in constraints.txt (run scripts/refresh-constraints): {missing}"
    # ... and every pin satisfies the project's own lower bounds.
    reqs = [Requirement(r) for r in wanted]
    clash = [str(r) for r in reqs if not r.specifier.contains(pins[canonicalize_name(r.name)])]
    assert not clash, f"constraints.txt contradicts pyproject.toml: {clash}"


def test_the_environment_holds_the_tested_versions() -> None:
    if (Path(sys.prefix) / "tre-newest-releases").exists():
        pytest.skip("scripts/install could not install constraints.txt here and took the newest releases")
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("not run from the environment scripts/install made")
    pins = _pins()
    differ = []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in ("tre", "pip") or name not in pins:
            continue
        if dist.version != pins[name]:
            differ.append(f"{name} {dist.version} (tested: {pins[name]})")
    assert not differ, f"run scripts/install again: {differ}"
