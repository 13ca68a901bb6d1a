"""The dependency edges between the platform's layers, pinned.

The layers, bottom up: leaves (errors, states, config, policy); the executors and kernels,
which must run inside a sandbox or a worker with nothing of the control plane above them; the
core (store, audit, auth, registry, access, jobs); the airlock (egress_review), which builds on
the core; and the composition roots (the API app and its routers, the CLI, the demo), which
alone may join core and airlock. Every ``import`` statement in every module, including those
inside functions, is read with `ast` and judged against these rules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("tre", "egress_review")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every first-party module ``path`` imports (absolute names; relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    me = module_name(path).split(".")
    if path.name != "__init__.py":
        me = me[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me[: len(me) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def all_modules() -> dict[str, set[str]]:
    return {
        module_name(p): imports_of(p)
        for pkg in PACKAGES
        for p in sorted((REPO / pkg).rglob("*.py"))
        if "migrations" not in p.parts
    }


def within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


LEAVES = ("tre.errors", "tre.states", "tre.config", "tre.safetar", "tre.plural")
COMPOSITION = ("tre.api", "tre.cli", "tre.demo", "tre.server")

# (who, what they may import from the first-party packages, why)
RULES = [
    (
        "tre.kernels",
        ("tre.kernels", "tre"),
        "kernels run inside the job image: nothing of the control plane",
    ),
    (
        "tre.executors",
        ("tre.executors", "tre", *LEAVES),
        "executors are the bottom of the worker: they get a JobSpec, never the database",
    ),
    (
        "tre.audit.verify",
        ("tre.audit.verify", "tre.audit.merkle", "tre.audit.note", "tre.audit", "tre"),
        "the offline verifier trusts nothing of the operator's code",
    ),
    (
        "egress_review.checks",
        # the disguise helpers the log screen shares with the file checks: text in, text out
        # (they import only `egress_review.checks.identifiers` and the standard library)
        (
            "egress_review.checks",
            "egress_review.disguised",
            "egress_review.encoded",
            "egress_review.folding",
            "egress_review.mixed_words",
            "egress_review.number_bytes",
            "egress_review.number_forms",
            "egress_review.spelled",
            "egress_review.split_parts",
            "egress_review.terminal",
            "egress_review",
            "tre.policy",
            "tre",
            *LEAVES,
        ),
        "checks judge one file under a policy; they know nothing of requests or the web",
    ),
    (
        "egress_review.disguised",
        (
            "egress_review.checks.identifiers",
            "egress_review.encoded",
            "egress_review.folding",
            "egress_review.mixed_words",
            "egress_review.number_bytes",
            "egress_review.number_forms",
            "egress_review.spelled",
            "egress_review.terminal",
            "egress_review",
        ),
        "the disguise helpers are text in, text out, shared by the log screen and the file checks",
    ),
]


@pytest.fixture(scope="module")
def modules() -> dict[str, set[str]]:
    return all_modules()


@pytest.mark.parametrize(("who", "allowed", "why"), RULES, ids=[r[0] for r in RULES])
def test_layer_imports_only_what_it_may(
    modules: dict[str, set[str]], who: str, allowed: tuple[str, ...], why: str
) -> None:
    bad = {
        (mod, imp)
        for mod, imps in modules.items()
        if within(mod, who)
        for imp in imps
        if not (imp in allowed or within(imp, *[a for a in allowed if a not in ("tre", "egress_review")]))
    }
    assert not bad, f"{who}: {why}; forbidden imports: {sorted(bad)}"


def test_core_never_imports_the_airlock(modules: dict[str, set[str]]) -> None:
    """The airlock builds on the core; only the composition roots join the two."""
    bad = sorted(
        (mod, imp)
        for mod, imps in modules.items()
        if within(mod, "tre") and not within(mod, *COMPOSITION)
        for imp in imps
        if within(imp, "egress_review")
    )
    assert not bad, f"core modules importing the airlock: {bad}"


def test_airlock_logic_stays_out_of_the_web_layer(modules: dict[str, set[str]]) -> None:
    """Workflow, checks, staging and screening serve API, panel and worker alike."""
    web = ("egress_review.api", "egress_review.panel")
    bad = sorted(
        (mod, imp)
        for mod, imps in modules.items()
        if within(mod, "egress_review") and not within(mod, *web)
        for imp in imps
        if within(imp, *COMPOSITION, *web)
    )
    assert not bad, f"airlock logic importing the web layer: {bad}"


def test_leaves_import_only_leaves(modules: dict[str, set[str]]) -> None:
    bad = sorted(
        (mod, imp) for mod in LEAVES for imp in modules[mod] if imp != "tre" and not within(imp, *LEAVES)
    )
    assert not bad, f"leaf modules must not import the layers above: {bad}"


def test_the_contract_bites() -> None:
    """An import the rules forbid is caught, or the tests above prove nothing."""
    sample = REPO / "tre" / "executors" / "base.py"
    assert "tre.states" in imports_of(sample)
    assert not within("tre.store.models", *RULES[1][1][2:])
    assert within("tre.api.routers.jobs", *COMPOSITION)
    assert imports_of(REPO / "tre" / "jobs" / "service.py") & {"tre.access"}
