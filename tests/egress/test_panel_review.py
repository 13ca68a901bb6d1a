"""The round-2 panel in Debian Chromium: queue facts, findings and vote form first, bounded tables,
highlighted SDC cells, NIfTI slices, OCR text for reviewers, collapsed passed files."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.egress.planted_corpus import _nifti
from tests.egress.test_workflow_support import seed_world

pytestmark = pytest.mark.browser

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
WIDE = (
    "\n".join(",".join(str((r * 7 + c * 3) % 50 + 10) for c in range(300)) for r in range(120)) + "\n"
).encode()
SMALL_COUNT = b"histology,sex,n\nadenocarcinoma,F,45\nsmall cell,M,3\nsquamous,F,20\n"
ZERO_COUNT = b"site,n\nA,0\nB,40\nC,45\n"


def _label_png() -> bytes:
    img = Image.new("L", (640, 160), 0)
    ImageDraw.Draw(img).text((20, 50), "Jonah Smithfield", fill=255, font=ImageFont.truetype(FONT, 40))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _request(live, token: str, job_id: str, files: list[str], why: str) -> str:  # type: ignore[no-untyped-def]
    resp = httpx.post(
        f"{live.url}/api/v1/egress/requests",
        headers={"Authorization": f"Bearer {token}"},
        json={"job_id": job_id, "files": files, "justification": why},
        timeout=30.0,  # the checks (OCR of the figure) run in the request, as for the CLI (30 s)
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_panel_puts_findings_first_and_bounds_previews(browser, live, db, esettings, token_for) -> None:
    mask = np.zeros((40, 40, 12), dtype=np.uint8)
    mask[10:30, 12:28, 3:9] = 1
    outputs = {
        "tables/wide.csv": WIDE,
        "tables/small.csv": SMALL_COUNT,
        "figures/label.png": _label_png(),
        "tables/zero.csv": ZERO_COUNT,
        "volumes/mask.nii": _nifti(mask, datatype=2),
        **{f"tables/ok_{i:02d}.csv": b"site,n\nA,45\nB,40\n" for i in range(12)},
    }
    with db.begin() as s:
        world = seed_world(s, esettings, outputs)
    researcher = token_for(world.researcher, "researcher")
    blocked = _request(
        live,
        researcher,
        world.job_id,
        ["tables/wide.csv", "tables/small.csv", "figures/label.png"],
        "Wide feature table and a labelled figure",
    )
    flagged = _request(
        live,
        researcher,
        world.job_id,
        ["tables/zero.csv", "volumes/mask.nii", *[f"tables/ok_{i:02d}.csv" for i in range(12)]],
        "Site counts and the tumour mask for the paper",
    )

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live.url}/panel/login")
    page.fill("#token", token_for("dana", "dac"))
    page.click("#sign-in")
    page.wait_for_url(f"{live.url}/panel/")

    # The queue says what each request is, not just its id; blocked requests have no vote count.
    page.goto(f"{live.url}/panel/?show=all")
    row = page.locator(f"#queue tr[data-id='{blocked}']")
    assert "Wide feature table" in row.inner_text() and "tables/small.csv" in row.inner_text()
    assert "blocked" in row.locator("td.counts").inner_text()
    assert row.locator("td.votes").inner_text().strip() == "no vote"
    assert "UTC" in row.locator("td.age").inner_text()
    assert "0 / 2" in page.locator(f"#queue tr[data-id='{flagged}'] td.votes").inner_text()

    # The blocked request: wide table in a bounded box, the n=3 cell highlighted, OCR text shown.
    page.goto(f"{live.url}/panel/requests/{blocked}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    wide = page.locator("details.file", has_text="tables/wide.csv")
    box = wide.locator(".table-box")
    assert box.count() == 1 and box.evaluate("b => b.scrollWidth > b.clientWidth")  # scrolls in its box
    assert "Rows 2–26 of 120 (row 1 is the header)" in wide.inner_text()
    small = page.locator("details.file", has_text="tables/small.csv")
    highlighted = small.locator("td.sdc-cell")
    assert highlighted.count() == 1 and highlighted.inner_text() == "3"
    label = page.locator("details.file", has_text="figures/label.png")
    assert "smithfield" in label.locator("dl.values").inner_text().lower()
    assert "No vote" in page.inner_text("#votes-count")

    # The flagged request: findings and the vote form in the first screen, passed files collapsed.
    page.goto(f"{live.url}/panel/requests/{flagged}")
    form_top = page.locator("#vote-form").bounding_box()
    assert form_top is not None and form_top["y"] < 900
    assert "tables/zero.csv" in page.inner_text("#summary")
    passed = page.locator("details.file.pass")
    assert passed.count() == 13 and all(not d.evaluate("d => d.open") for d in passed.all())
    mask_file = page.locator("details.file", has_text="volumes/mask.nii")
    mask_file.locator("summary").click()  # a reviewer opens the collapsed file, then its preview
    mask_file.locator("a.show-preview").click()
    page.wait_for_url("**preview=*")
    nifti = page.locator("img.render.nifti")
    nifti.scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.querySelectorAll('img.render.nifti')].every(i => i.complete)")
    assert nifti.evaluate("i => i.naturalWidth") > 3 * 200
    context.close()
