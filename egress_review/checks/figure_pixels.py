"""Counts drawn in a raster figure's pixels, and bars drawn without labels (leaks13).

Tesseract reads a page of text well and a chart badly: its sparse mode skips a lone ``3``
atop a bar, and a label that touches a coloured bar is lost in the bar. So a figure (a mostly
white picture: a plot, not a scan) is taken apart first:

* **Words.** Dark, uncoloured pixels are the text and the axes; long straight runs (axis
  lines, tick marks, grid) are removed, what remains is grouped into word boxes, and the word
  crops are stacked into one sheet that tesseract reads in one run (block mode, which reads a
  single digit). Each recognised word is placed back where it was drawn.
* **Ticks.** Axis tick labels are numbers in a row (x axis) or a column (y axis) whose values
  are evenly spaced in drawing order (``0 10 20 30``); those are dropped. What is left and
  reads as a count (``3``, ``n=3``, ``B: 3``) under the threshold is a drawn count
  (`sdc:figure`, the policy's ``sdc.prose_counts`` action, like an SVG's labels).
* **Bars.** A bar chart or histogram of few bars shows its counts as heights even without a
  label, and a height is only a number once the axis scale is read. So solid rectangles of one
  colour standing on one baseline (2 to `MAX_BARS` bars, or a histogram's stepped block) make
  a fixed-words note for the reviewers (`figure:bars`, a flag, never a block): "check the bar
  heights". Nothing the job drew is quoted in the reason.

Bounded: figures over `MAX_PIXELS` are not taken apart (the OCR of the whole picture still
runs), at most `MAX_WORDS` words are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from egress_review.checks import ocr
from egress_review.checks.figures import _LABEL, small_counts_flag
from egress_review.checks.model import CheckResult
from tre.policy import Policy

MAX_PIXELS = 4_000_000
MAX_WORDS = 300
MAX_BARS = 40
SCALE = 4
MIN_CONFIDENCE = 60.0
OCR_TIMEOUT_S = 30
_INT = re.compile(r"^[-−]?\d{1,7}$")
_NUMBER = re.compile(r"^[-−—]?\d{0,7}[.,]?\d{1,7}$")


@dataclass(frozen=True)
class Word:
    """A recognised word and the box it was drawn in (x0, y0, x1, y1) in the figure."""

    text: str
    box: tuple[int, int, int, int]
    confidence: float = 100.0


def is_figure(rgb: np.ndarray) -> bool:
    """A plot, not a photograph or a scan: most of it is near-white background."""
    return bool((rgb.min(axis=-1) >= 235).mean() >= 0.45)


def _long_runs(mask: np.ndarray, length: int) -> np.ndarray:
    """Pixels in straight horizontal or vertical runs of at least ``length`` (axes, grids)."""
    from scipy import ndimage

    horizontal = ndimage.binary_opening(mask, structure=np.ones((1, length), bool))
    vertical = ndimage.binary_opening(mask, structure=np.ones((length, 1), bool))
    return np.asarray(horizontal | vertical)


@dataclass(frozen=True)
class Frame:
    """The plot's axes as drawn: the leftmost long vertical line and the lowest long
    horizontal line (None when there is none: a plot without spines)."""

    left: int | None
    bottom: int | None


def word_boxes(rgb: np.ndarray) -> tuple[list[tuple[int, int, int, int]], Frame, np.ndarray]:
    """Boxes of the figure's text words (dark uncoloured strokes, axes removed, glyphs joined),
    the axes' frame, and the text alone (grey levels of the text, white elsewhere) to read."""
    from scipy import ndimage

    a = rgb.astype(np.int16)
    # JPEG blurs a line's grey and tints it: a looser cut finds the axes, the strict one the text
    loose = (a.max(axis=-1) < 170) & ((a.max(axis=-1) - a.min(axis=-1)) < 60)
    dark = (a.max(axis=-1) < 150) & ((a.max(axis=-1) - a.min(axis=-1)) < 50)
    h_img, w_img = dark.shape
    length = max(12, min(rgb.shape[:2]) // 12)
    horizontal = ndimage.binary_opening(loose, structure=np.ones((1, length), bool))
    vertical = ndimage.binary_opening(loose, structure=np.ones((length, 1), bool))
    cols = np.nonzero(vertical.sum(axis=0) >= h_img // 3)[0]
    rows = np.nonzero(horizontal.sum(axis=1) >= w_img // 3)[0]
    cols, rows = cols[cols < w_img // 2], rows[rows > h_img // 2]
    frame = Frame(int(cols.min()) if cols.size else None, int(rows.max()) if rows.size else None)
    lines = ndimage.binary_dilation(horizontal | vertical)
    dark &= ~lines
    gray = a[..., :3].mean(axis=-1)
    only_text = np.where(dark | (ndimage.binary_dilation(dark) & (gray < 235) & ~lines), gray, 255)
    labels, n = ndimage.label(dark, structure=np.ones((3, 3), bool))
    if n == 0:
        return [], frame, only_text
    glyphs = []
    for sl in ndimage.find_objects(labels)[: MAX_WORDS * 8]:
        if sl is None:
            continue
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if h <= 60 and w <= 60:
            glyphs.append(sl)  # letters, digits, and the points and minus signs between them
    tall = [sl[0].stop - sl[0].start for sl in glyphs if sl[0].stop - sl[0].start >= 4]
    if not tall:
        return [], frame, only_text
    text = np.zeros_like(dark)
    for sl in glyphs:
        text[sl] |= dark[sl]
    height = int(np.median(tall))
    joined = ndimage.binary_dilation(
        text, structure=np.ones((max(1, height // 3), max(3, (height * 2) // 3)), bool)
    )
    wl, _ = ndimage.label(joined)
    boxes = []
    for sl in ndimage.find_objects(wl)[:MAX_WORDS]:
        if sl is None:
            continue
        ys, xs = np.nonzero(text[sl])
        if len(ys) == 0:
            continue
        y0, x0 = sl[0].start + int(ys.min()), sl[1].start + int(xs.min())
        y1, x1 = sl[0].start + int(ys.max()) + 1, sl[1].start + int(xs.max()) + 1
        if y1 - y0 <= 2 or x1 - x0 <= 1 or y1 - y0 < height // 2:
            continue  # a tick mark or a rule, not a word
        boxes.append((x0, y0, x1, y1))
    return boxes, frame, only_text.astype(np.uint8)


def read_words(gray: Image.Image, boxes: list[tuple[int, int, int, int]]) -> list[Word] | None:
    """Each box's text, from one tesseract run over a sheet of the crops; None when it fails."""
    import pytesseract

    if not boxes:
        return []
    pad, gap = 3, 14
    crops = [gray.crop((x0 - pad, y0 - pad, x1 + pad, y1 + pad)) for x0, y0, x1, y1 in boxes]
    # upscaled smoothly, then cut to black and white: tesseract's shapes for an 8 px glyph
    crops = [c.resize((c.width * SCALE, c.height * SCALE), Image.Resampling.LANCZOS) for c in crops]
    crops = [c.point(lambda v: 0 if v < 170 else 255) for c in crops]
    width = max(c.width for c in crops) + 2 * gap
    sheet = Image.new("L", (width, sum(c.height + gap for c in crops) + gap), 255)
    offsets = []
    y = gap
    for c in crops:
        sheet.paste(c, (gap, y))
        offsets.append((y, y + c.height))
        y += c.height + gap
    ocr.one_thread_each()
    try:
        data = ocr.once_per_picture(
            "words",
            sheet,
            lambda: pytesseract.image_to_data(
                sheet, config="--psm 6", output_type=pytesseract.Output.DICT, timeout=OCR_TIMEOUT_S
            ),
            lambda _: True,
        )
    except (RuntimeError, pytesseract.TesseractError, OSError):
        return None
    found: dict[int, list[tuple[int, str, float]]] = {}
    for text, top, height, left, conf in zip(
        data["text"], data["top"], data["height"], data["left"], data["conf"], strict=False
    ):
        text = str(text).strip()
        if not text:
            continue
        middle = int(top) + int(height) // 2
        for i, (start, end) in enumerate(offsets):
            if start - gap // 2 <= middle <= end + gap // 2:
                found.setdefault(i, []).append((int(left), text, float(conf)))
                break
    # a y tick's mark is read as a trailing "-" beside its label
    return [
        Word(
            " ".join(t for _, t, _ in sorted(found[i])).rstrip(" -—~_"),
            boxes[i],
            min(c for _, _, c in found[i]),
        )
        for i in sorted(found)
    ]


def _evenly_spaced(values: list[int]) -> bool:
    if len(values) < 3 or len(set(values)) < len(values):
        return False
    steps = {b - a for a, b in zip(values, values[1:], strict=False)}
    return len(steps) == 1


def _aligned(words: list[Word], numeric: list[int]) -> set[int]:
    """Numbers 3+ in a row (same centre y) or a column (same right edge): an axis's ticks."""
    out: set[int] = set()
    for key in (lambda w: (w.box[1] + w.box[3]) / 2, lambda w: w.box[2]):
        groups: list[list[int]] = []
        for i in sorted(numeric, key=lambda i: key(words[i])):
            if groups and abs(key(words[i]) - key(words[groups[-1][-1]])) <= 3:
                groups[-1].append(i)
            else:
                groups.append([i])
        out.update(i for g in groups if len(g) >= 3 for i in g)
    return out


def tick_words(words: list[Word], frame: Frame) -> set[int]:
    """Indexes of words that are axis tick labels. Outside the axes' frame (left of the y axis,
    below the x axis), 3+ aligned plain numbers; inside it, or with no frame, only aligned
    numbers whose values are evenly spaced in position order (a label atop a bar is inside)."""
    numeric = [i for i, w in enumerate(words) if _NUMBER.match(w.text)]
    ticks: set[int] = set()
    outside = [
        i
        for i in range(len(words))
        if (frame.left is not None and words[i].box[2] <= frame.left + 1)
        or (frame.bottom is not None and words[i].box[1] >= frame.bottom - 1)
    ]
    ticks |= _aligned(words, [i for i in outside if i in numeric])
    # a bare number outside the frame is an axis's (a tick, or a rotated title misread); a
    # named one (``B (n=3)`` under a bar) is a label
    ticks |= {i for i in outside if _INT.match(words[i].text.strip("()[]{},;")) or i in numeric}
    plain = [i for i in numeric if _INT.match(words[i].text)]
    for key, order in (
        (lambda w: (w.box[1] + w.box[3]) / 2, lambda w: w.box[0]),
        (lambda w: w.box[2], lambda w: w.box[1]),
    ):
        groups: list[list[int]] = []
        for i in sorted(plain, key=lambda i: key(words[i])):
            if groups and abs(key(words[i]) - key(words[groups[-1][-1]])) <= 3:
                groups[-1].append(i)
            else:
                groups.append([i])
        for group in groups:
            ordered = sorted(group, key=lambda i: order(words[i]))
            if _evenly_spaced([int(words[i].text.replace("−", "-")) for i in ordered]):
                ticks.update(group)
    return ticks


def drawn_labels(words: list[Word], frame: Frame, threshold: int) -> list[str]:
    """Words that read as a count under ``threshold`` and are not axis ticks."""
    ticks = tick_words(words, frame)
    heights = sorted(w.box[3] - w.box[1] for w in words if _INT.match(w.text))
    usual = heights[len(heights) // 2] if heights else 0
    out = []
    for i, w in enumerate(words):
        if _INT.match(w.text) and not 0.75 * usual <= w.box[3] - w.box[1] <= 1.15 * usual:
            continue  # a bare number taller or smaller than the figure's digits: markers (two
            # overlapping fliers of a box plot read as "8")
        m = _LABEL.match(w.text.strip("()[]{},;"))
        if i in ticks or m is None or w.confidence < MIN_CONFIDENCE:
            continue  # an axis's, not a count, or a marker tesseract guessed at (a flier's "o")
        if 0 < int(m.group("num")) < threshold:
            out.append(w.text)
    return out


def count_bars(rgb: np.ndarray) -> int:
    """Bars standing on one baseline: solid one-colour shapes, each column filled from its top
    down to a shared bottom row, away from the picture's edge. Adjacent bars of one colour (a
    histogram) are one shape whose top steps: each step is a bar. 0 when there are none."""
    from scipy import ndimage

    h, w = rgb.shape[:2]
    a = rgb.astype(np.int16)
    coloured = (a.max(axis=-1) - a.min(axis=-1)) >= 40
    grey = (a.max(axis=-1) < 235) & ~coloured
    best = 0
    for mask in _colour_masks(rgb, coloured | grey):
        labels, n = ndimage.label(mask)
        bases: dict[int, int] = {}
        for sl in ndimage.find_objects(labels)[:500]:
            if sl is None:
                continue
            y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
            if y0 == 0 or x0 == 0 or y1 >= h or x1 >= w or y1 - y0 < 3 or x1 - x0 < 3:
                continue
            block = mask[sl]
            tops = np.argmax(block, axis=0)
            filled = block.sum(axis=0)
            bottom_ok = block[-1].all()
            if not bottom_ok or not np.all(filled == block.shape[0] - tops):
                continue  # not standing on a flat bottom, or holes: not bars
            steps = 1 + int(np.count_nonzero(np.abs(np.diff(tops)) > 1))
            bases[y1] = bases.get(y1, 0) + steps
        for base in bases:
            near = sum(v for b, v in bases.items() if abs(b - base) <= 2)
            if 2 <= near <= MAX_BARS:
                best = max(best, near)
    return best


def _colour_masks(rgb: np.ndarray, candidates: np.ndarray) -> list[np.ndarray]:
    """One mask per frequent colour among ``candidates`` (at most six colours)."""
    flat = rgb.reshape(-1, rgb.shape[-1])[:, :3]
    keys = (flat[:, 0].astype(np.int32) << 16) | (flat[:, 1].astype(np.int32) << 8) | flat[:, 2]
    keys = keys.reshape(rgb.shape[:2])
    chosen = keys[candidates]
    if chosen.size == 0:
        return []
    values, counts = np.unique(chosen, return_counts=True)
    order = np.argsort(counts)[::-1][:6]
    return [keys == values[i] for i in order if counts[i] >= 30]


def check_figure_pixels(img: Image.Image, policy: Policy, *, read_text: bool) -> list[CheckResult]:
    """Drawn counts (when ``read_text``: the policy's OCR is on) and unlabelled bars of a raster
    figure (see the module docstring)."""
    if img.width * img.height > MAX_PIXELS:
        return []
    rgb = np.asarray(img.convert("RGB"))
    if not is_figure(rgb):
        return []
    out: list[CheckResult] = []
    small: list[str] = []
    if read_text:
        boxes, frame, text = word_boxes(rgb)
        words = read_words(Image.fromarray(text, mode="L"), boxes)
        small = drawn_labels(words or [], frame, policy.sdc.threshold)
    out += small_counts_flag(small, policy, "image (OCR)")
    bars = count_bars(rgb)
    if bars:
        out.append(
            CheckResult(
                check="figure:bars",
                outcome="flag",
                reason=f"figure: check bar heights. The image draws {bars} bars on one baseline (a bar "
                "chart or histogram); a bar's height is a count the checks cannot read from the axis",
                evidence={"bars": bars},
            )
        )
    return out
