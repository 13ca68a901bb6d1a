"""Researchers' container images: import (docker save / OCI archive / OCI layout), verify,
store by manifest digest, unpack safely once per digest, approve per project, push to the
TRE's registry, and build the platform's own CPU job image.

Modules, one job each: `reference` (names and digests), `errors`, `limits`, `archive` (the
uploaded file), `layers` (what a layer may contain), `layout` (OCI layout verification),
`tools` (skopeo/umoci), `unpack`, `store` (the content-addressed store), `catalog` (database
records and approvals), `push`, `jobimage`.
"""
