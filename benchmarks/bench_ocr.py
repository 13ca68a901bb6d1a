"""What the airlock's OCR of one picture costs: tesseract started once a variant (as it was)
against one tesseract reading every variant as the pages of one document (as it is), each
with tesseract's default OpenMP threads and with one thread.

    PYTHONPATH=. python benchmarks/bench_ocr.py [--repeat 3]

Pictures: pydicom's CT_small slice with a name burned in (upscaled 8x, as the OCR does for a
small picture), a white 640x480 figure with black and red text, and a 512x512 noisy picture
(where tesseract finds "text" in the noise). Prints the children's CPU seconds and the wall
seconds of the best pass of each way, and the ratios to the old way; asserts nothing (the
equality of the text is a test: tests/egress/test_ocr_runs.py).
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import time
from collections.abc import Callable

import numpy as np
import pytesseract
from PIL import Image, ImageDraw
from pydicom import dcmread
from pydicom.data import get_testdata_file

from egress_review.checks import ocr


def pictures() -> dict[str, Image.Image]:
    ct = ocr.to_gray(dcmread(get_testdata_file("CT_small.dcm")).pixel_array).convert("RGB")
    ImageDraw.Draw(ct).text((5, 5), "DOE^JOHN 4471", fill=(255, 255, 255))
    figure = Image.new("RGB", (640, 480), "white")
    ImageDraw.Draw(figure).text((50, 50), "Dice 0.91 n=12 patients", fill="black")
    ImageDraw.Draw(figure).text((50, 400), "PatientID MRN0012345", fill=(200, 0, 0))
    noise = np.random.default_rng(0).integers(0, 80, (512, 512), dtype=np.uint8)
    noisy = Image.fromarray(noise).convert("RGB")
    ImageDraw.Draw(noisy).text((40, 40), "PATIENT 12345678", fill=(255, 255, 255))
    return {"CT_small + name": ct, "figure 640x480": figure, "noisy 512x512": noisy}


def variants(img: Image.Image) -> list[Image.Image]:
    """The recogniser's variants of the picture (`ocr._read_text`, without the slant turns)."""
    factor = max(1, min(4, ocr.MIN_SIDE // max(1, min(img.size)))) if min(img.size) < ocr.MIN_SIDE else 1
    gray = img.convert("L")
    if factor > 1:
        gray = gray.resize((gray.width * factor, gray.height * factor), Image.Resampling.LANCZOS)
    layers = [*ocr._extremes(gray), *ocr._chromatic(img.resize(gray.size))]
    strokes = ocr._strokes(gray, 4 * factor + 5)
    rotated = [layer.rotate(angle, expand=True) for layer in layers or [gray] for angle in (90, 180, 270)]
    return [gray, *layers, *strokes, *rotated]


def _each(pages: list[Image.Image]) -> list[str]:
    return [str(pytesseract.image_to_string(p, config="--psm 11")) for p in pages]


def timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    best_cpu = best_wall = float("inf")
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        run()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best_wall = min(best_wall, time.perf_counter() - start)
        best_cpu = min(best_cpu, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return best_cpu, best_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'picture':18} {'variants':>8}  {'way':34} {'CPU-s':>6} {'wall-s':>6} {'CPU ratio':>9}")
    for name, img in pictures().items():
        pages = variants(img)
        ways: list[tuple[str, str | None, Callable[[], object]]] = [
            ("a tesseract a variant, OpenMP", None, functools.partial(_each, pages)),
            ("a tesseract a variant, one thread", "1", functools.partial(_each, pages)),
            ("one document, one thread (now)", "1", functools.partial(ocr._read_pages, pages)),
        ]
        first = None
        for way, limit, run in ways:
            os.environ.pop("OMP_THREAD_LIMIT", None)
            if limit:
                os.environ["OMP_THREAD_LIMIT"] = limit
            cpu, wall = timed(run, args.repeat)
            first = first or cpu
            print(f"{name:18} {len(pages):8d}  {way:34} {cpu:6.2f} {wall:6.2f} {cpu / first:8.2f}x")


if __name__ == "__main__":
    main()
