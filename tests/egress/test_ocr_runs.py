"""How the airlock runs tesseract: each run on one OpenMP thread (its spinning threads doubled
the OCR's CPU on a busy machine: `egress_review.checks.ocr.one_thread_each`), and once per
distinct picture (an archive of one figure many times over cost its copies' OCR). A `tesseract`
placed first on PATH records each run and the environment it gets, then runs the real one, in
a fresh process so that no earlier test's setting or reading counts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr not installed")

_RUN = textwrap.dedent(
    """
    from PIL import Image, ImageDraw
    from egress_review.checks import figure_pixels, ocr

    img = Image.new("L", (400, 120), 255)
    ImageDraw.Draw(img).text((10, 40), "n = 3 patients", fill=0)
    assert ocr.recognise(img).error == ""
    assert figure_pixels.read_words(img, [(8, 38, 120, 52)]) is not None
    """
)


def _runs(tmp_path: Path, script: str, preset: str | None = None) -> list[str]:
    """Each tesseract run while ``script`` ran: the OMP_THREAD_LIMIT it got, then its arguments."""
    log = tmp_path / "runs.log"
    shim = tmp_path / "bin" / "tesseract"
    shim.parent.mkdir()
    real = shutil.which("tesseract")
    shim.write_text(f'#!/bin/sh\necho "${{OMP_THREAD_LIMIT:-unset}} $*" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
    env["PATH"] = f"{shim.parent}{os.pathsep}{env['PATH']}"
    if preset is not None:
        env["OMP_THREAD_LIMIT"] = preset
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    return log.read_text().splitlines() if log.exists() else []


def test_every_ocr_run_gets_one_thread(tmp_path: Path) -> None:
    runs = _runs(tmp_path, _RUN)
    # the recogniser's variants as one document, the figure's word sheet (and pytesseract's
    # `tesseract --version` before a TSV reading)
    assert sum("--psm" in run for run in runs) == 2, runs
    assert {run.split()[0] for run in runs} == {"1"}


def test_an_operators_own_setting_is_kept(tmp_path: Path) -> None:
    assert {run.split()[0] for run in _runs(tmp_path, _RUN, "2")} == {"2"}


_FILES = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from PIL import Image, ImageDraw
    from egress_review.checks import CheckContext, run_checks
    from tre.policy import load_policy

    folder, copies, changed = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "changed"
    policy = load_policy("default", Path(sys.argv[4]))
    img = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(img).text((20, 80), "Dice 0.91 on 12 scans", fill="black")
    reasons, ids = set(), CheckContext(identifiers={"Doe^Jane"})
    for i in range(copies):
        if changed:
            img.putpixel((i, 0), (0, 0, 0))  # one pixel more: another picture
        img.save(folder / f"fig{i}.png")
        results = run_checks(folder / f"fig{i}.png", f"fig{i}.png", policy, ids)
        (ocr,) = [r for r in results if r.check.startswith("ocr")]
        assert ocr.outcome == "pass", ocr
        reasons.add(ocr.reason)
    assert len(reasons) == 1 or changed, reasons  # each copy's finding says what the first's says
    """
)


def _file_runs(tmp_path: Path, copies: int, changed: bool) -> tuple[int, int]:
    """How many tesseract runs read whole pictures (--psm 11) and figures' word sheets (--psm 6)."""
    folder = tmp_path / f"{copies}-{changed}"
    folder.mkdir()
    policies = Path(__file__).resolve().parents[2] / "policies"
    argv = [str(folder), str(copies), "changed" if changed else "same", str(policies)]
    runs = _runs(folder, f"import sys; sys.argv[1:] = {argv!r}\n" + _FILES)
    return sum("--psm 11" in r for r in runs), sum("--psm 6" in r for r in runs)


def test_one_picture_in_many_files_is_read_once(tmp_path: Path) -> None:
    """The same figure in several outputs (or a request resubmitted after a rejection) costs one
    reading; a picture one pixel apart is read again."""
    assert _file_runs(tmp_path, 1, changed=False) == (1, 1)  # the variants, the figure's words
    assert _file_runs(tmp_path, 4, changed=False) == (1, 1)
    # a dot in a corner: each picture read again; its words' sheet is the same, read once
    assert _file_runs(tmp_path, 3, changed=True) == (3, 1)


def test_the_variants_read_as_one_document_read_as_each_alone() -> None:
    """One tesseract reads the variants as pages; each page's text is what a run on that variant
    alone reads (a CT slice with a name burned in, and a figure with coloured text)."""
    import pytesseract
    from PIL import Image, ImageDraw
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    from egress_review.checks import ocr

    ct = ocr.to_gray(dcmread(get_testdata_file("CT_small.dcm")).pixel_array).convert("RGB")
    ImageDraw.Draw(ct).text((5, 5), "DOE^JOHN 4471", fill=(255, 255, 255))
    figure = Image.new("RGB", (640, 480), "white")
    ImageDraw.Draw(figure).text((50, 50), "Dice 0.91 n=12 patients", fill="black")
    ImageDraw.Draw(figure).text((50, 400), "PatientID MRN0012345", fill=(200, 0, 0))
    for picture in (ct, figure):
        gray = picture.convert("L").resize((picture.width * 2, picture.height * 2))
        variants = [gray, *ocr._extremes(gray), *ocr._chromatic(picture), gray.rotate(90, expand=True)]
        alone = [pytesseract.image_to_string(v, config="--psm 11").strip() for v in variants]
        pages = [page.strip() for page in ocr._read_pages(variants).split("\f")]
        assert pages[: len(variants)] == alone and not any(pages[len(variants) :])
        assert any(alone), "nothing read: the comparison would prove nothing"


def test_what_is_kept_is_bounded_in_bytes_whatever_the_pictures_hold() -> None:
    """A job controls how much text its pictures hold: the readings kept are bounded in bytes,
    the newest kept, and a reading too large for its share is not kept at all."""
    from PIL import Image

    from egress_review.checks import ocr

    read: list[int] = []

    def reading(text: str) -> ocr.OcrText:
        read.append(1)
        return ocr.OcrText(text)

    big = "x" * (ocr.RECOGNISED_KEPT_BYTES // 100)  # ~100 of these fill the cache
    for i in range(300):
        ocr.once_per_picture(
            "test",
            Image.new("L", (8, 8), i % 256 if i < 256 else 0).resize((8, 9 + i)),
            lambda: reading(big),
            lambda _: True,
        )
    assert sum(ocr._text_bytes(v) for v in ocr._recognised.values()) <= ocr.RECOGNISED_KEPT_BYTES
    last = Image.new("L", (8, 8), 0).resize((8, 9 + 299))
    before = len(read)
    ocr.once_per_picture("test", last, lambda: reading(big), lambda _: True)
    assert len(read) == before  # the newest is still kept
    huge = "x" * (ocr.RECOGNISED_KEPT_BYTES // 32)
    tall = Image.new("L", (3, 3), 7)
    ocr.once_per_picture("test", tall, lambda: reading(huge), lambda _: True)
    ocr.once_per_picture("test", tall, lambda: reading(huge), lambda _: True)
    assert len(read) == before + 2  # too large to keep: read each time
