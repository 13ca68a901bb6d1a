"""A small Kustomize renderer for the subset k8s/ uses: resources, patches (strategic merge
by kind/name, named-list merge for containers/env/volumes/...), and images (digest pins).

CI machines cannot install the kustomize binary, so the tests render the overlays with this;
where `kubectl` is on PATH the tests also check that kubectl's kustomize gives the same objects.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
NAMED_LISTS = {"containers", "initContainers", "env", "volumes", "volumeMounts", "ports", "tolerations"}


def _load_all(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _key(obj: Obj) -> tuple[str, str, str | None]:
    return obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")


def _merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _merge(base.get(k), v, k) if k in base else copy.deepcopy(v)
        return out
    if (
        field in NAMED_LISTS
        and isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        by_name = {i["name"]: i for i in base}
        out_list = [copy.deepcopy(i) for i in patch if i["name"] not in by_name]
        for item in base:
            match = next((p for p in patch if p["name"] == item["name"]), None)
            out_list.append(_merge(item, match) if match else item)
        return out_list
    return copy.deepcopy(patch)


def _set_images(obj: Any, images: list[Obj]) -> Any:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "image" and isinstance(v, str):
                ref = v.split("@", 1)[0]
                name = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
                for img in images:
                    if img["name"] == name:
                        new = img.get("newName", name)
                        obj[k] = (
                            f"{new}@{img['digest']}"
                            if "digest" in img
                            else f"{new}:{img.get('newTag', 'latest')}"
                        )
            else:
                _set_images(v, images)
    elif isinstance(obj, list):
        for i in obj:
            _set_images(i, images)
    return obj


def render(directory: Path) -> list[Obj]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kust) - {"apiVersion", "kind", "resources", "patches", "images", "sortOptions"}
    if unsupported:
        raise ValueError(f"kustomize_lite does not support {sorted(unsupported)} in {directory}")
    if kust.get("sortOptions", {"order": "fifo"}).get("order") != "fifo":
        raise ValueError("kustomize_lite renders in resource order (sortOptions.order: fifo) only")
    objs: list[Obj] = []
    for res in kust.get("resources", []):
        path = directory / res
        objs.extend(render(path) if path.is_dir() else _load_all(path))
    for patch in kust.get("patches", []):
        for p in _load_all(directory / patch["path"]):
            idx = next(
                i
                for i, o in enumerate(objs)
                if o["kind"] == p["kind"] and o["metadata"]["name"] == p["metadata"]["name"]
            )
            objs[idx] = _merge(objs[idx], p)
    if kust.get("images"):
        objs = [_set_images(o, kust["images"]) for o in objs]
    return objs


def normalise(objs: list[Obj]) -> dict[tuple[str, str, str | None], Any]:
    """Order-insensitive view for comparing two renderings (named lists sorted by name)."""

    def norm(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, list):
            items = [norm(i) for i in x]
            if all(isinstance(i, dict) and "name" in i for i in items):
                return sorted(items, key=lambda i: i["name"])
            return items
        return x

    return {_key(o): norm(o) for o in objs}
