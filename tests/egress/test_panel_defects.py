"""Each defect a DAC member found in the panel (issue 10), checked in Debian Chromium against
the app served by uvicorn: queue facts, a 51-file request with the decision first and few tab
stops, wide tables bounded and paged, SDC cells highlighted on the page that holds them, NIfTI
orthogonal slices and DICOM overlays drawn (read back from the rendered pixels), metadata
values shown beside the reason that names them, human-readable sizes."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import pack_bits
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from egress_review import workflow
from tests.conftest import REPO, seed_sqlite
from tests.egress.planted_corpus import _nifti
from tests.egress.test_workflow_support import (
    LiveServer,
    World,
    dicom_bytes,
    seed_world,
    with_egress_routes,
    write_policy,
)
from tre.auth.principal import Principal
from tre.config import Settings, reset_settings_cache
from tre.store.db import init_db, make_engine, session_factory

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
VIEWPORT = {"width": 1280, "height": 900}
SAFE = b"site,n\nA,45\nB,40\n"
ZERO_ROW = 60  # file row (header = 1) of the zero count, on the third page of 25 rows
DESCRIP = "scanner notes lab4 sequence B"
BIG_LOG = b"epoch 1 loss 0.31 accuracy 0.92\n" * 81920  # 2.5 MiB


def deep_zero_table() -> bytes:
    rows = [f"S{i:03d},{0 if i + 2 == ZERO_ROW else 40 + i % 7}" for i in range(80)]
    return ("site,n\n" + "\n".join(rows) + "\n").encode()


def wide_table(columns: int = 2000, rows: int = 60) -> bytes:
    header = ",".join(f"feature_{i:04d}" for i in range(columns))
    body = "\n".join(",".join(f"{0.001 * (r + c):.3f}" for c in range(columns)) for r in range(rows))
    return f"{header}\n{body}\n".encode()


def overlay_dicom() -> bytes:
    """A CT slice whose overlay plane (6000,3000) holds a filled square at rows/cols 8-23."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(extra_identifying=False)))
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[8:24, 8:24] = 1
    ds.add_new(0x60000010, "US", 64)
    ds.add_new(0x60000011, "US", 64)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", pack_bits(mask.ravel()))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def volume() -> bytes:
    vol = np.zeros((48, 40, 24), dtype=np.uint8)
    vol[12:36, 10:30, 6:18] = 1
    return _nifti(vol, descrip=DESCRIP, datatype=2)


LARGE = {
    "tables/zero_deep.csv": deep_zero_table(),
    "volumes/seg.nii": volume(),
    "dicom/overlay.dcm": overlay_dicom(),
    "logs/train.log": BIG_LOG,
    **{f"tables/ok_{i:02d}.csv": SAFE for i in range(47)},
}
WIDE = {"tables/features.csv": wide_table()}
BLOCKED = {"tables/by_histology.csv": b"histology,n\nadenocarcinoma,45\nsmall cell,3\n"}  # n=3


@dataclass
class Requests:
    world: World
    large: str  # 51 files, flagged: awaiting review
    wide: str  # one 2,000-column table
    blocked: str  # a count of 3: blocked by the threshold rule


def _create(db, esettings, world: World, paths: list[str], why: str) -> str:  # type: ignore[no-untyped-def]
    researcher = Principal(user_id=world.researcher, roles=frozenset({"researcher"}))
    with db.begin() as s:
        return str(
            workflow.create_request(
                s, esettings, researcher, job_id=world.job_id, paths=paths, justification=why
            ).id
        )


# The 51-file request: a dataset policy that allows up to 60 files per request.
POLICY = """\
name: panel-large
version: "1"
description: the egress test policy with room for 51 files
required_reviews: 2
files:
  max_files: 60
dicom:
  attribute_present: flag
  private_tags: flag
"""


# One world for the module: its 51-file request's checks (a 2.5 MiB log, a 2,000-column
# table) took ~12 s of set-up for each of the seven tests. The tests only read it, except
# the vote in `test_large_request_puts_findings_and_vote_first`, which is last in the file
# so that the queue test's "0 / 2" sees the request before any vote (pytest runs a module's
# tests in file order). Each test still gets its own browser context and page.
@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """`tests.conftest.settings` for the module's one world (its own state folder)."""
    home = tmp_path_factory.mktemp("panel-defects") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRE_HOME", str(home))
        mp.setenv("TRE_SANDBOX_HOST_TOOLCHAIN", "1")
        mp.delenv("TRE_DATABASE_URL", raising=False)
        reset_settings_cache()
        s = Settings(
            home=home,
            policies_dir=REPO / "policies",
            worker_poll_s=0.05,
            worker_heartbeat_s=0.5,
            worker_stale_after_s=3.0,
            sandbox_host_toolchain=True,
        )
        s.ensure_dirs()
        yield s
    reset_settings_cache()


@pytest.fixture(scope="module")
def esettings(settings: Settings) -> Settings:
    write_policy(settings.home.parent / "policies")
    settings.policies_dir = settings.home.parent / "policies"
    return settings


@pytest.fixture(scope="module")
def engine(settings: Settings, migrated_sqlite: Path) -> Iterator[Engine]:
    seed_sqlite(settings.resolved_database_url, migrated_sqlite)
    eng = make_engine(settings.resolved_database_url)
    init_db(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def db(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture(scope="module")
def live(esettings: Settings, engine: Engine) -> Iterator[LiveServer]:
    from tre.api.app import create_app

    with LiveServer(with_egress_routes(create_app(esettings, engine))) as server:
        yield server


@pytest.fixture(scope="module")
def token_for(settings: Settings) -> Callable[..., str]:
    from tre.auth.tokens import TokenIssuer

    issuer = TokenIssuer.from_settings(settings)
    return lambda user_id, *roles: issuer.mint(user_id, list(roles), ttl_s=3600)


@pytest.fixture(scope="module")
def requests(db, esettings) -> Requests:  # type: ignore[no-untyped-def]
    (esettings.policies_dir / "panel-large.yaml").write_text(POLICY)
    with db.begin() as s:
        world = seed_world(s, esettings, {**LARGE, **WIDE, **BLOCKED}, policy="panel-large")
    assert len(LARGE) == 51
    large = _create(db, esettings, world, list(LARGE), "Site counts, the tumour mask and one overlay slice")
    wide = _create(db, esettings, world, list(WIDE), "Radiomics feature table (2,000 features)")
    blocked = _create(db, esettings, world, list(BLOCKED), "Counts by histology")
    return Requests(world, large, wide, blocked)


@pytest.fixture
def page(browser, live, token_for, requests):  # type: ignore[no-untyped-def]
    """A DAC member signed in (after the world, and with it the reviewer, exists)."""
    context = browser.new_context(viewport=VIEWPORT)
    p = context.new_page()
    p.goto(f"{live.url}/panel/login")
    p.fill("#token", token_for("dana", "dac"))
    p.click("#sign-in")
    p.wait_for_url(f"{live.url}/panel/")
    yield p
    context.close()


def outcomes(db, rid: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with db.begin() as s:
        return {f.path: f.outcome for f in workflow.load_request(s, rid).files}


def test_queue_says_what_each_request_is(page, live, requests, db) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live.url}/panel/?show=all")
    large = outcomes(db, requests.large)
    row = page.locator(f"#queue tr[data-id='{requests.large}']")
    text = row.inner_text()
    assert "Site counts, the tumour mask" in text  # the justification, not only an id
    assert "dicom/overlay.dcm" in text and "and 47 more" in text and "(51 files)" in text
    flagged = sum(1 for o in large.values() if o == "flag")
    assert flagged >= 2 and f"{flagged} flagged" in row.locator("td.counts").inner_text()
    assert re.search(r"^\d+ (min|h|d)\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC$", row.locator("td.age").inner_text())
    assert row.locator("td.age time").get_attribute("datetime").endswith("+00:00")  # type: ignore[union-attr]
    assert row.locator("td.votes").inner_text().strip() == "0 / 2"
    assert outcomes(db, requests.blocked) == {"tables/by_histology.csv": "block"}
    blocked = page.locator(f"#queue tr[data-id='{requests.blocked}']")
    assert blocked.locator("td.votes").inner_text().strip() == "no vote"  # not "0 / 2 votes"
    assert "0 / 2" not in blocked.inner_text() and "1 blocked" in blocked.locator("td.counts").inner_text()
    assert "blocked" in blocked.locator("td .state").inner_text()


def test_wide_table_stays_in_a_bounded_box_and_pages_columns(page, live, requests) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live.url}/panel/requests/{requests.wide}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= VIEWPORT["width"] + 16  # was 129,581 px
    card = page.locator("details.file", has_text="tables/features.csv")
    box = card.locator(".table-box")
    assert box.evaluate("b => b.scrollWidth > b.clientWidth")  # the table scrolls inside its box
    assert card.locator("table.data thead th").count() == 41  # row number + 40 columns
    pager = card.locator(".pager").inner_text()
    assert "Rows 2–26 of 61 (row 1 is the header)" in pager and "columns 1–40 of 2000" in pager
    card.locator("a.cols-next").click()
    page.wait_for_url("**cols*=1*")
    card = page.locator("details.file", has_text="tables/features.csv")
    assert "columns 41–80 of 2000" in card.locator(".pager").inner_text()
    assert card.locator("table.data thead th").nth(1).inner_text() == "feature_0040"
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"] + 16


def test_sdc_cell_is_highlighted_on_the_page_that_holds_it(page, live, requests) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live.url}/panel/requests/{requests.large}")
    card = page.locator("details.file", has_text="tables/zero_deep.csv")
    assert "sdc:" in card.locator("table.checks").inner_text()
    cell = card.locator("td.sdc-cell")
    assert cell.count() == 1 and cell.inner_text() == "0"
    row_number = cell.locator("xpath=../td[contains(@class, 'rowno')]").inner_text()
    assert int(row_number) == ZERO_ROW  # the reviewer lands on page 3, where the cell is
    assert cell.evaluate("c => getComputedStyle(c).backgroundColor") != "rgba(0, 0, 0, 0)"
    card.locator("a[rel=prev]").click()  # other pages stay reachable
    page.wait_for_url("**page*=1*")
    assert page.locator("details.file", has_text="tables/zero_deep.csv").locator("td.sdc-cell").count() == 0


PIXELS_JS = """img => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  return Array.from(g.getImageData(0, 0, c.width, c.height).data);
}"""


def _pixels(page, img) -> np.ndarray:  # type: ignore[no-untyped-def]
    img.scroll_into_view_if_needed()  # previews load lazily
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
    w, h = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    return np.asarray(img.evaluate(PIXELS_JS), dtype=np.uint8).reshape(h, w, 4)


def test_nifti_shows_orthogonal_slices_and_dicom_its_overlay(page, live, requests) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live.url}/panel/requests/{requests.large}")
    seg = page.locator("details.file", has_text="volumes/seg.nii")
    if seg.locator("a.show-preview").count():  # a passed volume: opened on demand
        seg.locator("summary").click()
        seg.locator("a.show-preview").click()
        page.wait_for_url("**preview=*")
    nifti = _pixels(page, page.locator("img.render.nifti"))
    h, w = nifti.shape[:2]
    thirds = [nifti[:, i * w // 3 : (i + 1) * w // 3, 0] for i in range(3)]
    assert all((t > 128).any() for t in thirds)  # the mask is lit in axial, coronal and sagittal views
    assert w >= 3 * h - 16  # three views side by side

    page.goto(f"{live.url}/panel/requests/{requests.large}")
    dcm = page.locator("details.file", has_text="dicom/overlay.dcm")
    px = _pixels(page, dcm.locator("img.render"))
    yellow = (px[..., 0] > 200) & (px[..., 1] > 170) & (px[..., 2] < 80)
    scale = px.shape[0] / 64
    assert yellow.sum() >= (16 * scale) ** 2 * 0.9  # the 16x16 overlay square, drawn in yellow
    rows, cols = np.nonzero(yellow)
    assert rows.min() >= 7 * scale and rows.max() <= 25 * scale and cols.max() <= 25 * scale


def test_metadata_values_a_check_names_are_shown_with_its_reason(page, live, requests) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live.url}/panel/requests/{requests.large}")
    seg = page.locator("details.file", has_text="volumes/seg.nii")
    if seg.locator("a.show-preview").count():
        seg.locator("summary").click()
        seg.locator("a.show-preview").click()
        page.wait_for_url("**preview=*")
        seg = page.locator("details.file", has_text="volumes/seg.nii")
    row = seg.locator("table.checks tr", has_text="image_metadata")
    reason_cell = row.locator("td").nth(3)
    assert "descrip" in reason_cell.inner_text()  # the reason names the field ...
    values = reason_cell.locator("dl.values")
    assert DESCRIP in values.inner_text()  # ... and the value is right beside it


def test_sizes_are_human_readable(page, live, requests) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live.url}/panel/requests/{requests.large}")
    log = page.locator("details.file", has_text="logs/train.log")
    assert log.locator("summary .size").inner_text() == "2.5 MiB"
    small = page.locator("details.file", has_text="tables/ok_00.csv")
    assert small.locator("summary .size").inner_text() == f"{len(SAFE)} bytes"
    assert f"({len(BIG_LOG)} bytes)" in (log.text_content() or "")  # the exact count stays available


def test_large_request_puts_findings_and_vote_first(page, live, requests, db) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live.url}/panel/requests/{requests.large}")
    states = outcomes(db, requests.large)
    not_passed = sorted(p for p, o in states.items() if o != "pass")
    summary = page.inner_text("#summary")
    assert all(p in summary for p in not_passed)
    assert "tables/ok_00.csv" not in summary
    flagged = sum(1 for o in states.values() if o == "flag")
    assert f"{flagged} flagged" in page.inner_text("#decision-counts")  # what the vote is about
    # The decision is on the first screen; passed files are collapsed; the page is short.
    box = page.locator("#vote-form").bounding_box()
    assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"]
    passed = page.locator("details.file.pass")
    assert passed.count() == sum(1 for o in states.values() if o == "pass")
    assert not any(d.evaluate("d => d.open") for d in passed.all())
    assert page.evaluate("document.documentElement.scrollHeight") < 12_000  # was 21,000 px
    page.mouse.wheel(0, 6000)  # and it stays in view while the reviewer reads the files
    page.wait_for_function("() => window.scrollY > 1000")
    box = page.locator("#submit-vote").bounding_box()
    assert box is not None and 0 <= box["y"] <= VIEWPORT["height"] - box["height"]
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "egress-panel-51-files.png"))
    # From the top of the page, the vote button is a few Tab presses away, not behind the
    # evidence of every file (nor the findings): header links, the vote, comment, button.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    presses = 0
    while page.evaluate("document.activeElement && document.activeElement.id") != "submit-vote":
        page.keyboard.press("Tab")
        presses += 1
        assert presses <= 8, f"vote button not reached after {presses} Tab presses"
    page.check("input[name=vote][value=approve]")
    page.click("#submit-vote")
    page.wait_for_selector("#notice")
    assert "1 of 2" in page.inner_text("#votes-count")
