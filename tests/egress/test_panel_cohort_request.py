"""A DAC member reviews files of a cohort job in Debian Chromium.

The request names a few of a cohort job's files, some with names a job may choose and the
platform records: a 200-character name with no place to break, markup-like characters,
right-to-left script, a name that differs from another only by case. The page must show each
name as text, escaped, without widening the layout (it was 1,900 px wide). The panel reads
the request's files, never the job's outputs (tests/api/test_large_outputs.py bounds those).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from egress_review import workflow
from tests.egress.test_workflow_support import seed_world
from tre.auth.principal import Principal
from tre.jobs.output_handles import handle_key, output_handle

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1280, "height": 900}
SAFE = b"site,n\nA,45\nB,40\n"
LONG = "series/" + "x" * 190 + ".json"
MARKUP = "notes/<img src=x onerror=alert(1)>&amp;.txt"
HEBREW = "notes/\u05e1\u05d3\u05e8\u05d4-12.txt"
NAMES = [LONG, MARKUP, HEBREW, "tables/Counts.csv", "tables/counts.csv"]

POLICY = """\
name: cohort-panel
version: "1"
required_reviews: 2
job:
  allowed_images: ["registry.tre.local/*@sha256:*"]
  max_output_files: 100000
  max_output_name_chars: 1024
"""


def _as_named(names: list[str], outputs: dict[str, bytes], keys_dir: Path, job_id: str) -> list[str]:
    """How the researcher names them: by path, or by the keyed handle `tre outputs` lists in
    place of the hash where the name is withheld from them (the 190-character run reads as
    encoded data)."""
    key = handle_key(keys_dir)
    return [
        f"sha256:{output_handle(key, job_id, hashlib.sha256(outputs[n]).hexdigest())}" if n == LONG else n
        for n in names
    ]


def test_cohort_file_names_are_shown_escaped_without_breaking_the_layout(  # type: ignore[no-untyped-def]
    browser, live, db, esettings, token_for
):
    (esettings.policies_dir / "cohort-panel.yaml").write_text(POLICY)
    outputs = {f"series/{i:05d}/image.json": f'{{"series": {i}}}\n'.encode() for i in range(200)}
    outputs.update({name: SAFE if name.endswith(".csv") else b"plain notes\n" for name in NAMES})
    outputs[LONG] = b"plain notes of the long name\n"
    with db.begin() as s:
        world = seed_world(s, esettings, outputs, policy="cohort-panel")
    researcher = Principal(user_id=world.researcher, roles=frozenset({"researcher"}))
    with db.begin() as s:
        rid = workflow.create_request(
            s,
            esettings,
            researcher,
            job_id=world.job_id,
            paths=_as_named(NAMES, outputs, esettings.keys_dir, world.job_id),
            justification="five files",
        ).id
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{live.url}/panel/login")
    page.fill("#token", token_for("dana", "dac"))
    page.click("#sign-in")
    page.wait_for_url(f"{live.url}/panel/")
    page.goto(f"{live.url}/panel/requests/{rid}")
    text = page.inner_text("body")
    for name in NAMES:
        assert name in text, name
    # Markup in a name is text: no element was made from it and nothing ran.
    assert page.locator("img[src=x]").count() == 0 and dialogs == []
    # A 200-character name without a break point does not widen the page.
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"] + 16
    # The vote is still on the first screen.
    box = page.locator("#vote-form").bounding_box()
    assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"]
    # The queue lists the request's first file names: the long one folds there too.
    page.goto(f"{live.url}/panel/")
    assert LONG in page.inner_text("body")
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"] + 16
    context.close()
