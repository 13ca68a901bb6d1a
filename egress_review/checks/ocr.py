"""Text drawn into pixels: OCR with Debian's tesseract-ocr, matched against the dataset's identifiers.

BurnedInAnnotation is what the producer *claims*; a job can draw a name into pixels and leave
the flag at NO. So image outputs and DICOM pixel data are read by tesseract (through
``pytesseract``) and the recognised text goes through the same identifier matcher as any
text. The recognised text is kept for the reviewers (it is job-controlled, so it is
reviewer-only evidence). OCR misses stylised or tiny text: reviewers still see the image.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from cachetools import LRUCache
from PIL import Image

OCR_TIMEOUT_S = 30
MIN_SIDE = 1000  # tesseract reads ~20 px glyphs best: small images are upscaled
RECOGNISED_KEPT_BYTES = 16 << 20  # the remembered readings' text, at most (`_text_bytes`)


@dataclass(frozen=True)
class OcrText:
    """What tesseract recognised, or why it could not run."""

    text: str
    error: str = ""


def available() -> bool:
    return shutil.which("tesseract") is not None


def one_thread_each() -> None:
    """Run each tesseract on one OpenMP thread. Its threads spin while they wait for work, so
    on a busy machine (the airlock's checks beside jobs, or several checks at once) a run
    cost about twice the CPU and more wall time than on one thread (a 512x512 figure's OCR
    variants: 5.5 -> 2.9 CPU-s, the same text). pytesseract hands its children this process's
    environment and no other; the airlock's process starts no other OpenMP program (jobs
    get a cleared environment), and a value already set is kept."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")


def to_gray(pixels: np.ndarray) -> Image.Image:
    """Any 2D (or first frame / RGB) pixel array as 8-bit grayscale, contrast stretched."""
    arr = np.asarray(pixels)
    while arr.ndim > 3 or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        arr = arr[arr.shape[0] // 2]  # middle frame of a multi-frame image
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=-1)
    arr = arr.astype(np.float64)
    lo, hi = np.percentile(arr, 1), np.percentile(arr, 99.9)
    if hi <= lo:
        lo, hi = float(arr.min()), float(arr.max()) or 1.0
    scaled = np.clip((arr - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _extremes(gray: Image.Image) -> list[Image.Image]:
    """The brightest and the darkest pixels alone, as black text on white.

    Annotations are drawn at the extreme value over an image of every grey level (white text
    over a CT slice); tesseract's own binarisation loses them there, a fixed cut does not.
    """
    a = np.asarray(gray)
    lo, hi = int(a.min()), int(a.max())
    if hi - lo < 64:
        return []
    out = []
    for mask in (a >= hi - 24, a <= lo + 24):
        if 0.0005 < mask.mean() < 0.4:  # some pixels, not a whole region
            out.append(Image.fromarray(np.where(mask, 0, 255).astype(np.uint8), mode="L"))
    return out


def _strokes(gray: Image.Image, size: int) -> list[Image.Image]:
    """Thin bright (and thin dark) strokes alone, black on white, whatever their grey level
    (leaks10): faint text over an image is neither its brightest nor its darkest pixels, but
    it is thinner than anything anatomical. A morphological top-hat (the image minus its
    opening with a ``size`` square) keeps what is narrower than the square; the strongest of it
    is the text. scipy's opening runs the square as two one-dimensional passes: the same pixels
    as Pillow's MinFilter/MaxFilter, which cost ~0.6 s each on an upscaled 1024x1024 slice."""
    from scipy import ndimage

    out = []
    # text stands out from its background: bright strokes over a dark picture (a CT slice),
    # dark strokes over a light one (a plot); one top-hat, the background's, costs one run
    pixels = np.asarray(gray)
    dark = float(pixels.mean()) < 128
    for layer in (pixels,) if dark else (255 - pixels,):
        opened = ndimage.grey_opening(layer, size=(size, size), mode="nearest")
        tophat = layer - opened  # an opening is never above the image: no wrap-around
        cut = max(30.0, float(np.percentile(tophat, 99.5)) * 0.5)
        mask = tophat >= cut
        if 0.0005 < mask.mean() < 0.1:
            out.append(Image.fromarray(np.where(mask, 0, 255).astype(np.uint8), mode="L"))
    return out


def _chromatic(img: Image.Image) -> list[Image.Image]:
    """Coloured pixels alone, black on white: annotations are often drawn in colour (yellow,
    green) over a grey image, where their grey level is neither the brightest nor the darkest."""
    if img.mode not in ("RGB", "RGBA", "P"):
        return []
    a = np.asarray(img.convert("RGB")).astype(np.int16)
    mask = (a.max(axis=-1) - a.min(axis=-1)) >= 96
    if not 0.0005 < mask.mean() < 0.4:
        return []
    return [Image.fromarray(np.where(mask, 0, 255).astype(np.uint8), mode="L")]


def _deskew(layer: Image.Image) -> list[float]:
    """The turns that bring obliquely drawn text level (leaks10): the main axis of the text
    layer's black pixels is the direction of a line of text; both ways round, since the axis
    does not say which end is the start. Nothing when the text is already level or upright."""
    ys, xs = np.nonzero(np.asarray(layer) < 128)
    if len(xs) < 50:
        return []
    cov = np.cov(np.stack([xs, -ys]).astype(np.float64))
    values, vectors = np.linalg.eigh(cov)
    if values[1] < 4 * max(values[0], 1e-9):
        return []  # no dominant direction: not a line of text
    dx, dy = vectors[:, 1]
    angle = float(np.degrees(np.arctan2(dy, dx)))
    if min(abs(angle) % 90, 90 - abs(angle) % 90) < 8:
        return []  # level or upright: the quarter turns above read it
    return [-angle, 180 - angle]


# What tesseract read in pictures already seen, by their pixels: reading one costs up to
# seconds of CPU (10-14 variants), and the same picture comes back — a request resubmitted after
# a rejection, the same figure in a notebook and beside it, an archive holding one picture many
# times over (which made the checks' cost grow with the copies, not with what is new). Only
# readings that succeeded are kept: a failure (a timeout on a loaded machine) is tried again;
# and none over 1/64 of the bound (256 KiB), so one picture never pushes the others out.
def _text_bytes(found: Any) -> int:
    """About what a remembered reading holds: its strings and a fixed cost a string. A job
    controls how much text its pictures hold, so the cache is bounded in bytes, not entries."""
    if isinstance(found, OcrText):
        return 256 + len(found.text) + len(found.error)
    if isinstance(found, dict):  # tesseract's words table (`image_to_data`): a list a field
        return 256 + sum(64 + len(str(v)) for column in found.values() for v in column)
    return 1024


_recognised: LRUCache[str, Any] = LRUCache(maxsize=RECOGNISED_KEPT_BYTES, getsizeof=_text_bytes)
_recognised_lock = threading.Lock()
_T = TypeVar("_T")


def _pixels_key(kind: str, img: Image.Image) -> str:
    """The picture's identity for the cache: what is read, its mode, size, palette, every pixel."""
    digest = hashlib.sha256(f"{kind}:{img.mode}:{img.width}x{img.height}:".encode())
    palette = img.getpalette()
    if palette:
        digest.update(bytes(palette))
    digest.update(img.tobytes())
    return digest.hexdigest()


def once_per_picture(kind: str, img: Image.Image, read: Callable[[], _T], kept: Callable[[_T], bool]) -> _T:
    """``read()``'s result for this picture, remembered when ``kept`` says it succeeded (an
    exception is not remembered either)."""
    key = _pixels_key(kind, img)
    with _recognised_lock:
        if key in _recognised:
            return cast(_T, _recognised[key])
    found = read()
    if kept(found) and _text_bytes(found) <= RECOGNISED_KEPT_BYTES // 64:
        with _recognised_lock:
            _recognised[key] = found
    return found


def recognise(img: Image.Image) -> OcrText:
    """The text tesseract reads in the picture (`_read_text`), once per distinct picture."""
    if not available():
        return OcrText("", "tesseract is not installed")
    return once_per_picture("text", img, lambda: _read_text(img), lambda found: not found.error)


def _read_text(img: Image.Image) -> OcrText:
    """Run tesseract on the image, on its extreme grey levels and on its coloured pixels (where
    burned-in text sits), and on those text layers turned a quarter either way and upside down
    (text written sideways along an edge, or flipped), and turned level when drawn at a slant."""
    import pytesseract

    one_thread_each()
    factor = 1
    if min(img.size) < MIN_SIDE:
        factor = max(1, min(4, MIN_SIDE // max(1, min(img.size))))

    def upscale(layer: Image.Image) -> Image.Image:
        if factor == 1:
            return layer
        return layer.resize((layer.width * factor, layer.height * factor), Image.Resampling.LANCZOS)

    gray = upscale(img.convert("L"))
    layers = [*_extremes(gray), *(upscale(c) for c in _chromatic(img))]
    strokes = _strokes(gray, 4 * factor + 5)
    rotated = [layer.rotate(angle, expand=True) for layer in layers or [gray] for angle in (90, 180, 270)]
    # the first layer whose pixels run at a slant is turned level (two runs at most)
    slanted = next(((layer, turns) for layer in (*layers, *strokes) if (turns := _deskew(layer))), None)
    if slanted is not None:
        rotated += [slanted[0].rotate(turn, expand=True, fillcolor=255) for turn in slanted[1]]
    variants = [gray, *layers, *strokes, *rotated]
    try:
        text = _read_pages(variants)
    except (RuntimeError, pytesseract.TesseractError, OSError) as exc:
        return OcrText("", f"tesseract failed: {str(exc)[:200]}")
    lines: list[str] = []
    for page in text.split("\f"):
        for line in page.splitlines():
            line = line.strip()
            if len(re.sub(r"\W", "", line)) >= 2 and line not in lines:
                lines.append(line)
    return OcrText("\n".join(lines))


def _read_pages(variants: list[Image.Image]) -> str:
    """Every variant read by one tesseract, as the pages of one document (a list of image files
    is a multi-page input): each page is read as it is read alone (the same text, checked on a
    CT slice's and a figure's variants), and the model is loaded once, not once a variant —
    loading it was most of a small picture's cost (10 variants: 1.19 -> 0.25 CPU-s). Pages
    are separated by form feeds in the text. The time allowed is each variant's, summed."""
    import pytesseract

    with tempfile.TemporaryDirectory(prefix="tre-ocr-") as tmp:
        names = []
        for i, variant in enumerate(variants):
            name = os.path.join(tmp, f"page{i}.png")
            variant.save(name, format="PNG", compress_level=1)
            names.append(name)
        listing = os.path.join(tmp, "pages.txt")
        with open(listing, "w", encoding="utf-8") as f:
            f.write("\n".join(names) + "\n")
        return str(
            pytesseract.image_to_string(listing, config="--psm 11", timeout=OCR_TIMEOUT_S * len(variants))
        )
