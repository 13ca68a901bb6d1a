"""Each tesseract the airlock starts runs on one OpenMP thread: its spinning threads doubled the
OCR's CPU on a busy machine (see `egress_review.checks.ocr.one_thread_each`). A `tesseract`
placed first on PATH records the environment each run gets, then runs the real one, in a fresh
process so that no earlier test's setting counts."""

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


def _thread_limits(tmp_path: Path, preset: str | None) -> list[str]:
    log = tmp_path / "runs.log"
    shim = tmp_path / "bin" / "tesseract"
    shim.parent.mkdir()
    real = shutil.which("tesseract")
    shim.write_text(f'#!/bin/sh\necho "${{OMP_THREAD_LIMIT:-unset}}" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
    env["PATH"] = f"{shim.parent}{os.pathsep}{env['PATH']}"
    if preset is not None:
        env["OMP_THREAD_LIMIT"] = preset
    subprocess.run([sys.executable, "-c", _RUN], env=env, check=True, timeout=300)
    return log.read_text().split()


def test_every_ocr_run_gets_one_thread(tmp_path: Path) -> None:
    limits = _thread_limits(tmp_path, None)
    assert len(limits) >= 5  # the recogniser's variants and the figure reader's sheet
    assert set(limits) == {"1"}


def test_an_operators_own_setting_is_kept(tmp_path: Path) -> None:
    assert set(_thread_limits(tmp_path, "2")) == {"2"}
