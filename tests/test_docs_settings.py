"""The settings the code reads and the ones the documentation lists cannot drift apart.

An operator configures the platform from docs/configuration.md and the manifests in k8s/;
a setting the page does not list is one nobody can find, a listed one the code does not read
silently does nothing, and a default the page misstates misleads. Checked here, against the
pydantic-settings classes themselves: every field of `tre.config.Settings` (``TRE_*``) and
`KubernetesSettings` (``TRE_K8S_*``) has its row with the code's default; every row names a
variable that exists; every ``"TRE_*"`` string in the source is listed; every ``TRE_*``
word in the documentation, the manifests, the job image recipes and the scripts is one of
them; the control plane's Deployments set only real settings. Pure text and YAML parsing: well under a second.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from tre.config import Settings
from tre.executors.kubernetes.config import KubernetesSettings

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "configuration.md"
SETTINGS_CLASSES: list[tuple[type[BaseSettings], str]] = [
    (Settings, "TRE_"),
    (KubernetesSettings, "TRE_K8S_"),
]
# Fields whose default depends on who runs tre (root or not): the page gives both.
PER_USER_DEFAULTS = {
    "TRE_HOME": "/var/lib/tre",
    "TRE_DATA_DIR": "/srv/tre",
    "TRE_CACHE_DIR": "/var/cache/tre",
}
ROW = re.compile(r"^\| `(TRE_[A-Z0-9_]+)` \| ([^|]*) \|")
WORD = re.compile(r"\bTRE_[A-Z0-9_]*[A-Z0-9]\b")


def code_settings() -> dict[str, Any]:
    """Every variable the settings classes read, with its default value."""
    out: dict[str, Any] = {}
    for cls, prefix in SETTINGS_CLASSES:
        for name, field in cls.model_fields.items():
            default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
            out[f"{prefix}{name.upper()}"] = default
    return out


def page_sections() -> dict[str, dict[str, str]]:
    """The page's tables by section heading: variable -> default cell (backticks removed)."""
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in PAGE.read_text().splitlines():
        if line.startswith("## "):
            current = line[3:]
            sections[current] = {}
        elif (m := ROW.match(line)) and current:
            sections[current][m[1]] = m[2].strip().replace("`", "")
    return sections


def rendered(value: Any) -> str:
    """A default as the page writes it."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def documented_settings() -> dict[str, str]:
    sections = page_sections()
    return {**sections["The platform (`TRE_*`)"], **sections["The Kubernetes executor (`TRE_K8S_*`)"]}


def test_every_setting_is_documented_with_its_default() -> None:
    documented = documented_settings()
    code = code_settings()
    missing = sorted(set(code) - set(documented))
    assert not missing, f"settings the code reads but docs/configuration.md does not list: {missing}"
    wrong = {}
    for name, default in code.items():
        if name in PER_USER_DEFAULTS:
            if PER_USER_DEFAULTS[name] not in documented[name]:
                wrong[name] = (documented[name], PER_USER_DEFAULTS[name])
        elif documented[name] != rendered(default):
            wrong[name] = (documented[name], rendered(default))
    assert not wrong, f"defaults the page misstates (page, code): {wrong}"


def test_every_documented_setting_exists() -> None:
    extra = sorted(set(documented_settings()) - set(code_settings()))
    assert not extra, f"docs/configuration.md lists settings the code never reads: {extra}"


def known_variables() -> set[str]:
    """Settings, the CLI's own variables and those the platform sets inside a job."""
    return {name for rows in page_sections().values() for name in rows} | set(code_settings())


def documentation_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "SECURITY.md", REPO / "policies" / "SCHEMA.md"]
    files += sorted((REPO / "docs").glob("*.md"))
    files += [REPO / "benchmarks" / "README.md", REPO / "sandbox_images" / "README.md"]
    files += sorted((REPO / "sandbox_images").glob("Dockerfile*"))
    files += sorted(p for p in (REPO / "scripts").iterdir() if p.is_file())
    files += sorted(
        p for p in (REPO / "k8s").rglob("*") if p.suffix in {".yaml", ".yml", ".md", ".sh", ".py"}
    )
    return files


def test_every_variable_the_docs_and_manifests_name_exists() -> None:
    known = known_variables()
    # The tests' own variables (named on the page's last section, never read by the platform).
    unknown: dict[str, set[str]] = {}
    for path in documentation_files():
        for word in WORD.findall(path.read_text(errors="replace")):
            if word not in known and not word.startswith("TRE_TEST_"):
                unknown.setdefault(word, set()).add(str(path.relative_to(REPO)))
    assert not unknown, f"TRE_* variables named in docs or manifests that nothing defines: {unknown}"


def test_every_variable_the_code_names_is_documented() -> None:
    """A ``"TRE_*"`` string in the platform's source is a variable it reads or sets for a job
    (``os.environ.get("TRE_DEBUG")``, ``"TRE_JOB_ID": job.id``): each is on the page."""
    known = known_variables()
    sources = [p for d in ("tre", "egress_review", "aggregation") for p in sorted((REPO / d).rglob("*.py"))]
    named = {
        word: str(path.relative_to(REPO))
        for path in sources
        for word in re.findall(r"[\"'](TRE_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text())
    }
    assert {"TRE_DEBUG", "TRE_TOKEN", "TRE_JOB_ID"} <= set(named)
    unknown = {word: where for word, where in named.items() if word not in known}
    assert not unknown, f"variables the code names that docs/configuration.md does not list: {unknown}"


def deployment_env_names() -> dict[str, set[str]]:
    """Environment variable names each control-plane Deployment (base and overlay) sets."""
    names: dict[str, set[str]] = {}
    for path in sorted((REPO / "k8s" / "base").glob("*.yaml")) + sorted(
        (REPO / "k8s" / "overlays").rglob("*.yaml")
    ):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"].get("containers", []):
                key = f"{doc['metadata']['name']}/{container['name']}"
                names.setdefault(key, set()).update(e["name"] for e in container.get("env", []))
    return names


def test_deployments_set_only_real_settings() -> None:
    names = deployment_env_names()
    assert {"tre-api/api", "tre-worker/worker"} <= set(names)
    settings = set(code_settings())
    for container, env in names.items():
        assert env <= settings, f"{container} sets variables tre never reads: {sorted(env - settings)}"


@pytest.mark.parametrize("word", ["TRE_HOME", "TRE_K8S_QUOTA_GPU", "TRE_TOKEN"])
def test_the_scan_finds_what_it_checks(word: str) -> None:
    """The checks above would pass vacuously if the page or the scan read nothing."""
    assert word in known_variables()
    assert any(word in p.read_text(errors="replace") for p in documentation_files())
