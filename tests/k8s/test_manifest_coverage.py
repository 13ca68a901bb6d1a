"""Every manifest under k8s/ is validated, for every supported Kubernetes version.

test_manifests.py validates what it names; this file makes sure nothing is left out of it.
A new manifest, overlay, overlay patch or negative case under k8s/ is validated here with
`kubernetes-validate --strict` against each version in SUPPORTED_K8S_VERSIONS, or the guard
test fails until it is (or until it is listed as not a manifest, with the reason).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.k8s.conftest import ROOT, SUPPORTED_K8S_VERSIONS, kubernetes_validate, write_docs
from tests.k8s.kustomize_lite import render

K8S = ROOT / "k8s"
MANIFEST_SUFFIXES = {".yaml", ".yml", ".json"}
# Files under k8s/ with a manifest's suffix that are not Kubernetes objects.
NOT_MANIFESTS = {
    # A kustomize file, read by the renderer (and by kubectl kustomize): no API object.
    "k8s/base/kustomization.yaml",
}


def overlays() -> list[Path]:
    return sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))


def overlay_sources(overlay: Path) -> set[Path]:
    """The files an overlay's rendering reads: its kustomization, its patches and resources."""
    kust = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    files = {overlay / "kustomization.yaml"}
    for patch in kust.get("patches", []) or []:
        if isinstance(patch, dict) and "path" in patch:
            files.add(overlay / patch["path"])
    for res in kust.get("resources", []) or []:
        path = (overlay / res).resolve()
        if path.is_file():
            files.add(path)
    return files


def negative_objects() -> list[dict[str, Any]]:
    """Each negative admission case as the object run.sh submits: the API server must reach the
    policy, so the object has to be schema-valid (else it is refused for the wrong reason)."""
    out = []
    for case in sorted((K8S / "e2e" / "negative").glob("*.json")):
        doc = json.loads(case.read_text())
        base = yaml.safe_load((K8S / "e2e" / "manifests" / doc["base"]).read_text())
        out.append(jsonpatch.apply_patch(base, doc["patch"]))
    return out


def validated(tmp: Path) -> tuple[list[Path], set[Path]]:
    """The files to validate, and the source files under k8s/ they cover."""
    files = sorted(p for p in (K8S / "base").glob("*.yaml") if p.name != "kustomization.yaml")
    covered = set(files)
    for overlay in overlays():
        files.append(write_docs(tmp / "overlays" / f"{overlay.name}.yaml", render(overlay)))
        covered |= overlay_sources(overlay)
    e2e = sorted((K8S / "e2e" / "manifests").glob("*.yaml"))
    files += e2e
    covered |= set(e2e)
    files.append(write_docs(tmp / "negative" / "cases.yaml", negative_objects()))
    covered |= set((K8S / "e2e" / "negative").glob("*.json"))
    return files, covered


def test_every_manifest_under_k8s_is_validated(tmp_path: Path) -> None:
    _, covered = validated(tmp_path)
    on_disk = {p for p in K8S.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES}
    left_out = sorted(
        str(p.relative_to(ROOT))
        for p in on_disk - {c.resolve() for c in covered} - {p.resolve() for p in covered}
    )
    assert [p for p in left_out if p not in NOT_MANIFESTS] == []
    assert len(overlays()) >= 1 and len(covered) >= 40


def test_an_unreferenced_overlay_patch_is_noticed(tmp_path: Path) -> None:
    """The guard itself: a patch file an overlay does not reference is not covered."""
    overlay = tmp_path / "o"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text("resources: []\npatches:\n  - path: used.yaml\n")
    (overlay / "used.yaml").write_text("{}\n")
    (overlay / "forgotten.yaml").write_text("{}\n")
    assert (overlay / "forgotten.yaml") not in overlay_sources(overlay)
    assert (overlay / "used.yaml") in overlay_sources(overlay)


@pytest.mark.parametrize("version", SUPPORTED_K8S_VERSIONS)
def test_every_manifest_validates_for_each_supported_version(tmp_path: Path, version: str) -> None:
    files, _ = validated(tmp_path)
    kubernetes_validate(files, version)
