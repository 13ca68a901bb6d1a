"""The job image's Python packages cover what the job imports, at the versions tested here.

Why: the image once carried Debian's pydicom 2.3 while the kernels needed pydicom 3, and
`tre preprocess` failed inside it; nothing short of the opt-in image build noticed. These
tests read the job's own source for its imports, so a new import without its package in the
image fails here, in every run, without building anything."""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from tre.images import jobimage, python_layer


def third_party_imports(files: list[Path]) -> set[str]:
    """Top-level module names imported anywhere in ``files`` (also inside functions)."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "tre"}


def test_every_module_the_job_imports_is_in_the_image() -> None:
    pinned = {canonicalize_name(r.split("==")[0]) for r in python_layer.requirements()}
    providers = metadata.packages_distributions()
    job_files = [p for p in jobimage.tre_files() if p.suffix == ".py"]
    modules = third_party_imports(job_files) - set(python_layer.LEFT_OUT)
    assert {"numpy", "numba", "pydicom", "nibabel", "imagecodecs"} <= modules
    missing = {
        m: providers.get(m)
        for m in modules
        if not {canonicalize_name(d) for d in providers.get(m, [])} & pinned
    }
    assert not missing, f"imported by the job but not in the job image: {missing}"


def test_requirements_are_pinned_to_what_is_installed_here() -> None:
    reqs = python_layer.requirements()
    assert reqs == sorted(set(reqs))
    for req in reqs:
        name, _, version = req.partition("==")
        assert version == metadata.version(name), req
    names = {r.split("==")[0] for r in reqs}
    assert {"pydicom", "numba", "llvmlite", "numpy", "pillow"} <= names
    assert not names & {"pytest", "fastapi", "sqlalchemy", "numba-cuda"}  # only what the job runs


def test_pydicom_in_the_image_has_the_pixel_api_the_loader_needs() -> None:
    (pydicom,) = [r for r in python_layer.requirements() if r.startswith("pydicom==")]
    assert int(pydicom.split("==")[1].split(".")[0]) >= 3


def test_wheel_platforms_match_the_image() -> None:
    tags = python_layer._platforms()
    assert tags[0].startswith("manylinux_2_36_") and any(t.startswith("manylinux2014_") for t in tags)
    assert python_layer.target_environment()["python_version"] == "3.11"
    assert "python3" in jobimage.PACKAGES and not any(p.startswith("python3-") for p in jobimage.PACKAGES)
