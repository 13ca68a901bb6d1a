"""Evidence that quotes the job's own output (OCR text, header values) is for reviewers only."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy.orm import Session, sessionmaker

from egress_review import outputnames, workflow
from egress_review.checks import ocr
from tests.egress.test_workflow_support import seed_world
from tre.auth.principal import Principal
from tre.config import Settings

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
pytestmark = pytest.mark.skipif(not ocr.available(), reason="needs Debian tesseract-ocr")


def _drawn_png(text: str) -> bytes:
    img = Image.new("L", (640, 200), 0)
    ImageDraw.Draw(img).text((20, 60), text, fill=255, font=ImageFont.truetype(FONT, 40))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_ocr_text_reaches_reviewers_not_the_requester(db: sessionmaker[Session], esettings: Settings) -> None:
    with db.begin() as s:
        world = seed_world(s, esettings, {"figures/label.png": _drawn_png("Jonah Smithfield")})
    researcher = Principal(user_id=world.researcher, roles=frozenset({"researcher"}))
    with db.begin() as s:
        req = workflow.create_request(
            s,
            esettings,
            researcher,
            job_id=world.job_id,
            paths=["figures/label.png"],
            justification="a labelled figure",
        )
        rid = req.id
    with db() as s:
        req = workflow.load_request(s, rid)
        assert req.state == "blocked"
        # As the API shows it: with the job's name screening (this name passes it).
        names = outputnames.request_name_view(s, esettings, researcher, req.job_id)
        mine = workflow.request_view(s, req, researcher, names, keys_dir=esettings.keys_dir)["files"][0][
            "checks"
        ]
        assert mine, "the requester sees the check results of a file whose name is shown"
        dac = workflow.request_view(
            s, req, Principal(user_id="dana", roles=frozenset({"dac"})), keys_dir=esettings.keys_dir
        )["files"][0]["checks"]
        record = req.disclosure_record
    found = next(c for c in dac if c["check"] == "ocr:identifiers")
    assert "smithfield" in found["evidence"]["reviewer_only"]["ocr_text"].lower()
    assert "reviewer_only" not in next(c for c in mine if c["check"] == "ocr:identifiers")["evidence"]
    assert "smithfield" not in repr(mine).lower()
    assert record is not None and "smithfield" not in repr(record).lower()
