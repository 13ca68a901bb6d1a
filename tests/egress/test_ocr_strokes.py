"""The OCR's stroke layer (faint text over a picture) is the top-hat Pillow's square rank
filters give, computed by scipy's separable opening instead (~50x faster on a CT slice)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from pydicom.data import get_testdata_file

from egress_review.checks import ocr


def _pillow_strokes(gray: Image.Image, size: int) -> list[np.ndarray]:
    """The stroke layer as it was computed with Pillow's MinFilter/MaxFilter (the reference)."""
    dark = float(np.asarray(gray).mean()) < 128
    out = []
    for layer in (gray,) if dark else (ImageChops.invert(gray),):
        opened = layer.filter(ImageFilter.MinFilter(size)).filter(ImageFilter.MaxFilter(size))
        tophat = np.asarray(ImageChops.subtract(layer, opened))
        cut = max(30.0, float(np.percentile(tophat, 99.5)) * 0.5)
        mask = tophat >= cut
        if 0.0005 < mask.mean() < 0.1:
            out.append(np.where(mask, 0, 255).astype(np.uint8))
    return out


def _ct_with_faint_text() -> Image.Image:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    gray = ocr.to_gray(ds.pixel_array).resize((256, 256))
    ImageDraw.Draw(gray).text((20, 200), "MRN 4471", fill=150)
    return gray


@pytest.mark.parametrize("inverted", [False, True], ids=["dark-picture", "light-picture"])
@pytest.mark.parametrize("size", [9, 13])
def test_stroke_layer_matches_pillows_rank_filters(inverted: bool, size: int) -> None:
    gray = _ct_with_faint_text()
    if inverted:
        gray = ImageChops.invert(gray)
    ours = [np.asarray(layer) for layer in ocr._strokes(gray, size)]
    reference = _pillow_strokes(gray, size)
    assert len(ours) == len(reference) == 1
    assert np.array_equal(ours[0], reference[0])
