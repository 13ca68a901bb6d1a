"""The panel's Jinja2 templates (autoescaped), with the filters its pages use."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

from egress_review.panel import preview
from tre.plural import count

PACKAGE_DIR = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(PACKAGE_DIR / "templates"))
templates.env.filters["human_size"] = preview.human_size
templates.env.filters["evidence_json"] = preview.evidence_json
# `{{ n | counted("file") }}`: "1 file", "2 files" (the pages said "1 file(s)")
templates.env.filters["counted"] = count
