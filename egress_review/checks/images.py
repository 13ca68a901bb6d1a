"""Raster images (PNG, JPEG, GIF, TIFF...) and NIfTI volumes: decodability, size, metadata.

Plots are the most common output and the easiest place to hide text: PNG tEXt chunks, JPEG
COM segments and EXIF survive every viewer invisibly. NIfTI headers have free-text fields
(``descrip``, ``aux_file``, ``intent_name``) that conversion tools fill with series
descriptions, sometimes patient names. The decoded pixels themselves cannot be judged
automatically (a screenshot of a table is still a table) and are left to the reviewers.
"""

from __future__ import annotations

import contextlib
import math
import re
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from egress_review.checks import ocr
from egress_review.checks.containers import jpeg_structure, png_structure
from egress_review.checks.figure_pixels import check_figure_pixels
from egress_review.checks.identifiers import matcher_for
from egress_review.checks.model import CheckContext, CheckResult, action_outcome, mask
from egress_review.checks.text import check_identifiers
from tre.plural import count
from tre.policy import Policy, VolumeRules

# Image.info keys that describe encoding, not content.
STRUCTURAL_KEYS = frozenset(
    {
        "dpi",
        "gamma",
        "srgb",
        "chromaticity",
        "transparency",
        "aspect",
        "jfif",
        "jfif_version",
        "jfif_unit",
        "jfif_density",
        "progressive",
        "progression",
        "adobe",
        "adobe_transform",
        "interlace",
        "icc_profile",
        "duration",
        "loop",
        "background",
        "version",
        "compression",
        "bbox",
        "resolution",
        "unit",
        "exif",
        "xmp",
        "comment",
    }
)


def _text_metadata(img: Image.Image) -> dict[str, str]:
    """Free-text metadata of a decoded image: PNG text chunks, comments, EXIF, XMP."""
    found: dict[str, str] = {}
    text = getattr(img, "text", None)
    if isinstance(text, dict):
        for key, value in text.items():
            found[f"text:{key}"] = str(value)
    for key in ("comment", "xmp"):
        value = img.info.get(key)
        if value:
            found[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    exif = img.getexif()
    for tag, value in exif.items():
        found[f"exif:{tag}"] = exif_text(value, tag)
    for ifd_tag in (0x8769, 0x8825):  # Exif sub-IFD, GPS IFD
        try:
            sub = exif.get_ifd(ifd_tag)
        except (KeyError, ValueError, struct.error):
            continue
        for tag, value in sub.items():
            found[f"exif:{ifd_tag:#x}:{tag}"] = exif_text(value, tag)
    for key, value in img.info.items():
        if key not in STRUCTURAL_KEYS and f"text:{key}" not in found:
            found[f"info:{key}"] = str(value)[:200]
    return found


_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{4,}")
_UTF16BE_RUN = re.compile(rb"(?:\x00[\x20-\x7e]){4,}")


def binary_text(blob: bytes) -> str:
    """The text a binary structure carries: printable ASCII runs and UTF-16BE runs (ICC
    `desc`/`mluc` tags), one a line, for the identifier matcher."""
    runs = [m.group(0).decode("ascii") for m in _PRINTABLE_RUN.finditer(blob)]
    runs += [m.group(0).decode("utf-16-be") for m in _UTF16BE_RUN.finditer(blob)]
    return "\n".join(runs)


def _inflated_text(body: bytes) -> str:
    """The zlib stream of a zTXt/iTXt/iCCP chunk, inflated (1 MiB at most): it starts one or
    two bytes after one of the first four NULs (keyword, method, language tag, translated
    keyword)."""
    nul = -1
    for _ in range(4):
        nul = body.find(b"\x00", nul + 1)
        if nul < 0:
            break
        for skip in (1, 2, 3):
            with contextlib.suppress(zlib.error):
                return binary_text(zlib.decompressobj().decompress(body[nul + skip :], 1 << 20))
    return ""


def side_region_text(path: Path, fmt: str) -> dict[str, str]:
    """The text of every PNG chunk and JPEG APPn/COM segment that is not pixel data, whatever
    its type: a private chunk, an APP2 that is no ICC profile, an iTXt language tag. Pillow
    reports only the fields it knows; a job can write text anywhere else. Compressed chunks
    (zTXt, iTXt, iCCP) are also read inflated (bounded)."""
    if fmt not in ("PNG", "JPEG", "MPO"):
        return {}
    data = path.read_bytes()
    structure = png_structure(data) if fmt == "PNG" else jpeg_structure(data)
    out: dict[str, str] = {}
    for name, start, end in structure.side_regions[:1000]:
        body = data[start:end]
        texts = [binary_text(body)]
        if name in ("chunk zTXt", "chunk iTXt", "chunk iCCP"):
            texts.append(_inflated_text(body))
        text = "\n".join(t for t in texts if t)
        if text:
            # named by position: a chunk's type is four bytes the job chose
            out[f"{'chunk' if fmt == 'PNG' else 'segment'} #{len(out) + 1} (not pixel data)"] = text
    return out


# Exif 2.3 section 4.6.5: UserComment starts with an 8-byte character code.
EXIF_CHARSETS = {
    b"ASCII\x00\x00\x00": "ascii",
    b"UNICODE\x00": "utf-16",
    b"JIS\x00\x00\x00\x00\x00": "shift_jis",
    b"\x00" * 8: "utf-8",
}


def utf16_text(body: bytes) -> str:
    """UCS-2 text of either byte order. Exif says UNICODE follows the file's TIFF byte order,
    which a writer may ignore; without a BOM the order giving more printable ASCII wins."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return body.decode("utf-16", "replace").replace("\x00", "").strip()
    body = body[: len(body) // 2 * 2]
    candidates = [
        body.decode(order, "replace").replace("\x00", "").strip() for order in ("utf-16-be", "utf-16-le")
    ]
    return max(candidates, key=lambda t: sum(1 for ch in t if " " <= ch <= "~"))


# Windows "XP" tags (XPTitle, XPComment, XPAuthor, XPKeywords, XPSubject): UCS-2 little endian,
# stored as BYTE arrays, so a plain decode shows "J\x00a\x00n\x00e\x00".
XP_TAGS = frozenset({0x9C9B, 0x9C9C, 0x9C9D, 0x9C9E, 0x9C9F})


def exif_text(value: object, tag: int | None = None) -> str:
    """An EXIF value as text; UserComment's charset prefix is honoured, not shown as bytes."""
    if (
        tag in XP_TAGS
        and isinstance(value, tuple)
        and all(isinstance(v, int) and 0 <= v < 256 for v in value)
    ):
        value = bytes(value)  # BYTE arrays may come back as tuples of ints
    if isinstance(value, bytes) and tag in XP_TAGS:
        return utf16_text(value)
    if isinstance(value, bytes):
        charset = EXIF_CHARSETS.get(value[:8])
        if charset is not None:
            body = value[8:]
            if charset == "utf-16":
                return utf16_text(body)
            return body.decode(charset, "replace").replace("\x00", "").strip()
        return value.decode("utf-8", "replace").replace("\x00", " ").strip()
    if isinstance(value, tuple):
        return " ".join(exif_text(v) for v in value)
    return str(value)


def ocr_results(img: Image.Image, policy: Policy, context: CheckContext, what: str) -> list[CheckResult]:
    """Recognise text in the pixels; identifiers in it are findings, the text is shown to reviewers."""
    if not policy.image.ocr:
        return []
    if img.width * img.height > policy.image.ocr_max_pixels:
        return [
            CheckResult(
                check="ocr",
                outcome=action_outcome(policy.image.ocr_unavailable),
                reason=f"{what} is too large ({img.width}x{img.height}) "
                "to read for burned-in text automatically",
            )
        ]
    found = ocr.recognise(img)
    if found.error:
        return [
            CheckResult(
                check="ocr",
                outcome=action_outcome(policy.image.ocr_unavailable),
                reason=f"text in the pixels of this {what} could not be read automatically ({found.error})",
            )
        ]
    words = len(found.text.split())
    review = {"reviewer_only": {"ocr_text": found.text[:2000]}}
    matcher = matcher_for(policy, context.identifiers)
    hits = matcher.find(found.text) if matcher and found.text else []
    if hits:
        return [
            CheckResult(
                check="ocr:identifiers",
                outcome=action_outcome(policy.dicom.ocr),
                reason=f"text recognised in the pixels of this {what} contains "
                f"{count(len(hits), 'patient identifier')} "
                "of the dataset (burned in): see the recognised text",
                evidence={
                    "matches": [{"identifier": mask(h.identifier), "ocr_line": h.line} for h in hits[:20]],
                    **review,
                },
            )
        ]
    return [
        CheckResult(
            check="ocr",
            outcome="pass",
            reason=f"{count(words, 'word')} recognised in the pixels, none of them a dataset identifier",
            evidence=review if words else {},
        )
    ]


def _metadata_results(
    fields: dict[str, str],
    policy: Policy,
    context: CheckContext,
    what: str,
    searched_only: dict[str, str] | None = None,
) -> list[CheckResult]:
    """``searched_only``: text searched for identifiers but not itself worth a flag (an ICC
    profile's descriptions are in most camera and editor output)."""
    allowed = {k.lower() for k in policy.image.allowed_metadata_keys}
    out: list[CheckResult] = []
    matcher = matcher_for(policy, context.identifiers)
    if matcher:
        searched = {**(searched_only or {}), **fields}
        hits = [(key, h) for key, value in searched.items() for h in matcher.find(value)]
        if not hits:
            # spaced, reversed, escaped or short-encoded, as in any text the job writes
            joined = "\n".join(f"{key}: {value}" for key, value in searched.items())
            disguised = check_identifiers(joined, policy, context, check="image_metadata_identifiers")
            if disguised.outcome == "block":
                out.append(
                    disguised.model_copy(
                        update={
                            "check": "image_metadata_identifiers",
                            "reason": f"{what} metadata contains patient identifiers from the dataset in "
                            "disguise (spaced, reversed, escaped or encoded)",
                            "evidence": {"keys": sorted(searched)[:20]},
                        }
                    )
                )
        if hits:
            out.append(
                CheckResult(
                    check="image_metadata_identifiers",
                    outcome=action_outcome(policy.text.identifier_action),
                    reason=f"{what} metadata contains patient identifiers from the dataset "
                    f"(in {', '.join(sorted({k for k, _ in hits}))})",
                    evidence={
                        "matches": [{"field": k, "identifier": mask(h.identifier)} for k, h in hits[:20]]
                    },
                )
            )
    shown = {k: v for k, v in fields.items() if k.split(":")[-1].lower() not in allowed}
    if shown:
        out.append(
            CheckResult(
                check="image_metadata",
                outcome=action_outcome(policy.image.metadata),
                reason=f"{what} carries text metadata ({', '.join(sorted(shown)[:10])}); it is invisible in "
                "viewers, so check or strip it",
                evidence={
                    "keys": sorted(shown),
                    "lengths": {k: len(v) for k, v in shown.items()},
                    # the values themselves are the job's text: for the reviewers' eyes only
                    "reviewer_only": {"values": {k: v[:300] for k, v in sorted(shown.items())[:20]}},
                },
            )
        )
    return out


def check_raster(path: Path, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """Decode the image fully, then check its dimensions and metadata."""
    rules = policy.image
    out: list[CheckResult] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                probe.verify()
            with Image.open(path) as img:
                img.load()
                width, height = img.size
                fields = _text_metadata(img)
                icc = img.info.get("icc_profile")
                fmt = img.format or "image"
                pixels = img.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return [
            CheckResult(
                check="image_decode", outcome="block", reason=f"image too large to decode safely: {exc}"
            )
        ]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as exc:
        return [
            CheckResult(
                check="image_decode",
                outcome=action_outcome(rules.undecodable),
                reason=f"bytes do not decode as the image they claim to be: {exc}",
                evidence={"error": str(exc)[:300]},
            )
        ]
    evidence: dict[str, Any] = {"format": fmt, "width": width, "height": height}
    if width > rules.max_width or height > rules.max_height:
        out.append(
            CheckResult(
                check="image_size",
                outcome=action_outcome(rules.oversize),
                reason=f"image is {width}x{height}, larger than {rules.max_width}x{rules.max_height}",
                evidence=evidence,
            )
        )
    searched_only = side_region_text(path, fmt)
    if isinstance(icc, bytes) and icc:
        searched_only["icc_profile"] = binary_text(icc)
    out.extend(_metadata_results(fields, policy, context, fmt, searched_only))
    out.extend(_raster_similarity(pixels, policy, context, fmt))
    out.extend(
        r for r in ocr_results(pixels, policy, context, f"{fmt} image") if r.outcome != "pass" or r.evidence
    )
    # a chart's drawn counts and its bars (leaks13): OCR of the whole picture skips a lone "3"
    out.extend(check_figure_pixels(pixels, policy, read_text=policy.image.ocr and ocr.available()))
    if not [r for r in out if r.outcome != "pass"]:
        out.append(
            CheckResult(
                check="image",
                outcome="pass",
                reason=f"{fmt} {width}x{height}, no metadata",
                evidence=evidence,
            )
        )
    return out


def _raster_similarity(
    img: Image.Image, policy: Policy, context: CheckContext, fmt: str
) -> list[CheckResult]:
    """A picture of an input slice is the scan itself: the same similarity rule as a derived
    volume (`volume:similar_to_input`), on the image's grey levels (a 16-bit PNG of a CT slice
    is its raw pixels; an 8-bit one its windowed view)."""
    rules = policy.image.volumes
    if img.width * img.height > 64_000_000:
        return []  # too big to be a slice; the size rule speaks for it
    if max(img.size) > 1024:
        # compared as 48x48 thumbnails: shrink first, so a big picture never becomes floats whole
        step = math.ceil(max(img.size) / 512)
        size = (max(1, img.width // step), max(1, img.height // step))
        try:
            img = img.resize(size, Image.Resampling.BOX)
        except ValueError:  # modes resize does not take (16-bit grey): every step-th pixel
            img = Image.fromarray(np.asarray(img)[::step, ::step])
    grey = np.asarray(img.convert("F") if img.mode != "F" else img, dtype=np.float64)
    similar = input_match(grey, context, rules)
    if similar is None:
        return []
    return [
        CheckResult(
            check="image:similar_to_input",
            outcome=action_outcome(rules.similar_to_input),
            reason=f"the {fmt} image matches an input DICOM image of the dataset (correlation "
            f"{similar[0]:.3f}, threshold {rules.similarity_threshold}): a copy of the scan, not a result",
            evidence={"correlation": round(similar[0], 4)},
        )
    ]


# dcm2niix fills descrip with "TE=2.3;Time=101530.000;phase=1;mb=2": key=number pairs only.
DCM2NIIX_DESCRIP = re.compile(r"(?:(?:TE|TR|TI|Time|phase|mb|dwell|TA|FA|sec)=[-\d.]+;?)+")
NIFTI_DTYPES = {
    2: "u1",
    4: "i2",
    8: "i4",
    16: "f4",
    64: "f8",
    256: "i1",
    512: "u2",
    768: "u4",
    1024: "i8",
    1280: "u8",
}


def check_volume(
    data: bytes, hdr: dict[str, Any], shape: list[int], policy: Policy, context: CheckContext
) -> list[CheckResult]:
    """Derived-volume rules: size, mask/label map, and similarity to an input series."""
    rules = policy.image.volumes
    voxels = math.prod(shape)
    out: list[CheckResult] = []
    if voxels > rules.max_voxels:
        out.append(
            CheckResult(
                check="volume:size",
                outcome=action_outcome(rules.oversize),
                reason=f"volume has {voxels:,} voxels ({' x '.join(map(str, shape))}), more than the "
                f"{rules.max_voxels:,} a derived image may have: a whole scan, not a result",
                evidence={"voxels": voxels, "max_voxels": rules.max_voxels, "shape": shape},
            )
        )
    code = NIFTI_DTYPES.get(int(hdr["datatype"]))
    if code is None:
        out.append(
            CheckResult(
                check="volume:labels",
                outcome=action_outcome(rules.require_label_map),
                reason=f"NIfTI datatype {hdr['datatype']} is not a plain numeric type, "
                "so the voxels cannot be judged",
            )
        )
        return out
    start = int(hdr["vox_offset"])
    arr = np.frombuffer(data, dtype=np.dtype(code).newbyteorder(hdr["endian"]), count=voxels, offset=start)
    arr = arr.reshape(shape[::-1]).T if len(shape) > 1 else arr  # NIfTI is column-major (x fastest)
    sample = arr if voxels <= 8_000_000 else arr.reshape(-1)[:: max(1, voxels // 8_000_000)]
    finite = np.isfinite(sample) if sample.dtype.kind == "f" else None
    integral = sample.dtype.kind in "iu" or bool(np.all(sample[finite] == np.round(sample[finite])))
    distinct = np.unique(sample).size if integral else -1
    # Scaled integers (scl_slope / scl_inter: e.g. `tre preprocess --dtype int16`) are an
    # intensity image stored compactly, whatever their count of distinct values: a scan
    # quantised to a few levels must not pass as a label map (and skip the input match).
    is_labels = integral and not hdr.get("scaled", False) and 0 <= distinct <= rules.max_labels
    if not is_labels:
        out.append(
            CheckResult(
                check="volume:labels",
                outcome=action_outcome(rules.require_label_map),
                reason="the volume is an intensity image, not a mask or label map ("
                + ("scaled values (scl_slope / scl_inter)" if hdr.get("scaled") else "")
                + ("; " if hdr.get("scaled") else "")
                + (f"{distinct} distinct values" if integral else "non-integer values")
                + f", at most {rules.max_labels} labels allowed without review): "
                "check it is not a copy of the scan",
                evidence={"distinct_values": distinct, "dtype": code, "shape": shape},
            )
        )
        similar = input_match(arr, context, rules)
        if similar is not None:
            out.append(
                CheckResult(
                    check="volume:similar_to_input",
                    outcome=action_outcome(rules.similar_to_input),
                    reason=f"slice {similar[1]} of the volume matches an input DICOM image of the dataset "
                    f"(correlation {similar[0]:.3f}, threshold {rules.similarity_threshold}): the input scan "
                    "itself, not a derived result",
                    evidence={"correlation": round(similar[0], 4), "slice": similar[1]},
                )
            )
    return out


THUMB = 48


def _thumb(img: np.ndarray) -> np.ndarray:
    pic = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F").resize((THUMB, THUMB))
    v = np.asarray(pic, dtype=np.float64).ravel()
    v = v - v.mean()
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


def _input_thumbs(paths: list[Path], limit: int) -> np.ndarray:
    """Thumbnails of up to ``limit`` input images, cached while the folders are unchanged
    (every raster image and volume of a request compares against the same inputs)."""
    key = (tuple(str(p) for p in paths), limit, tuple(_stamp(p) for p in paths))
    if key not in _THUMBS:
        if len(_THUMBS) >= 8:
            _THUMBS.pop(next(iter(_THUMBS)))
        _THUMBS[key] = _read_input_thumbs(paths, limit)
    return _THUMBS[key]


_THUMBS: dict[tuple[object, ...], np.ndarray] = {}


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _read_input_thumbs(paths: list[Path], limit: int) -> np.ndarray:
    import pydicom

    from egress_review.checks.dicom import PIXEL_ERRORS

    thumbs: list[np.ndarray] = []
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if len(thumbs) >= limit:
                break
            try:
                with f.open("rb") as fh:
                    if fh.read(132)[128:132] != b"DICM":
                        continue
                ds = pydicom.dcmread(f)
                pix = ds.pixel_array
            except PIXEL_ERRORS:
                continue
            for frame in pix if pix.ndim == 3 and pix.shape[-1] not in (3, 4) else [pix]:
                if frame.ndim == 2:
                    thumbs.append(_thumb(frame))
    return np.array(thumbs) if thumbs else np.zeros((0, THUMB * THUMB))


def similarity_to_inputs(arr: np.ndarray, context: CheckContext, limit: int) -> tuple[float, int] | None:
    """Highest correlation of an axial slice (any flip or transpose) with an input DICOM image."""
    if limit <= 0 or not context.dataset_paths or arr.ndim < 2:
        return None
    inputs = _input_thumbs([Path(p) for p in context.dataset_paths], limit)
    if not len(inputs):
        return None
    vol = arr if arr.ndim == 3 else arr[..., None] if arr.ndim == 2 else arr.reshape(*arr.shape[:2], -1)
    step = max(1, vol.shape[2] // 64)
    best = (0.0, 0)
    for z in range(0, vol.shape[2], step):
        sl = np.asarray(vol[:, :, z], dtype=np.float64)
        variants = [
            sl,
            sl.T,
            sl[::-1],
            sl[:, ::-1],
            sl.T[::-1],
            sl.T[:, ::-1],
            sl[::-1, ::-1],
            sl.T[::-1, ::-1],
        ]
        thumbs = np.array([_thumb(v) for v in variants])
        score = float((thumbs @ inputs.T).max())
        if score > best[0]:
            best = (score, z)
    return best


def input_match(arr: np.ndarray, context: CheckContext, rules: VolumeRules) -> tuple[float, int] | None:
    """(correlation, slice) when ``arr`` matches an input DICOM image at or above the policy's
    threshold, else None: what "a copy of the scan" means for every output kind."""
    similar = similarity_to_inputs(arr, context, rules.max_input_slices)
    return similar if similar is not None and similar[0] >= rules.similarity_threshold else None


RAW_DTYPES = ("<i2", "<u2", "u1", "<f4", ">i2")


def raw_similarity(data: bytes, policy: Policy, context: CheckContext, what: str) -> CheckResult | None:
    """Raw bytes that are an input image: read as a square of 16-bit, 8-bit or float pixels
    (what ``ds.PixelData`` or ``arr.tobytes()`` gives) and compared like a derived volume."""
    rules = policy.image.volumes
    if not context.dataset_paths or len(data) > 64 * 1024 * 1024:
        return None
    for code in RAW_DTYPES:
        dtype = np.dtype(code)
        n = len(data) // dtype.itemsize
        side = math.isqrt(n)
        if side < 32 or side * side != n or len(data) % dtype.itemsize:
            continue
        step = math.ceil(side / 512)  # compared as thumbnails: never the whole square as floats
        arr = np.frombuffer(data, dtype=dtype).reshape(side, side)[::step, ::step].astype(np.float64)
        if not np.isfinite(arr).all():
            continue
        similar = input_match(arr, context, rules)
        if similar is not None:
            return CheckResult(
                check="raw:similar_to_input",
                outcome=action_outcome(rules.similar_to_input),
                reason=f"{what} read as a {side} x {side} image of {dtype.name} pixels matches an input "
                f"DICOM image of the dataset (correlation {similar[0]:.3f}): the scan's raw pixels",
                evidence={"correlation": round(similar[0], 4), "side": side, "dtype": dtype.name},
            )
    return None


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def _scaled(slope: float, inter: float) -> bool:
    """Whether readers map the stored values through ``scl_slope`` / ``scl_inter``: the
    standard applies them when the slope is not 0, and readers (nibabel) also ignore a NaN or
    infinite slope (nibabel writes NaN for "unscaled"); so a finite slope other than 0 and 1,
    or a slope of 1 with an intercept other than 0."""
    if not math.isfinite(slope) or slope == 0.0:
        return False
    return slope != 1.0 or (math.isfinite(inter) and inter != 0.0)


def nifti_header(data: bytes) -> dict[str, Any]:
    """The NIfTI-1/2 header fields that matter here (endianness detected from sizeof_hdr)."""
    for endian in "<>":
        (size,) = struct.unpack(endian + "i", data[:4])
        if size == 348:
            dims = struct.unpack(endian + "8h", data[40:56])
            datatype = struct.unpack(endian + "h", data[70:72])[0]
            bitpix = struct.unpack(endian + "h", data[72:74])[0]
            vox_offset = struct.unpack(endian + "f", data[108:112])[0]
            scl = struct.unpack(endian + "2f", data[112:120])
            text = {
                "db_name": _cstr(data[14:32]),
                "descrip": _cstr(data[148:228]),
                "aux_file": _cstr(data[228:252]),
                "intent_name": _cstr(data[328:344]),
            }
            return {
                "version": 1,
                "endian": endian,
                "datatype": datatype,
                "dims": dims,
                "bitpix": bitpix,
                "vox_offset": vox_offset,
                "scaled": _scaled(*scl),
                "text": text,
                "hdr": 348,
            }
        if size == 540:
            datatype = struct.unpack(endian + "h", data[12:14])[0]
            bitpix = struct.unpack(endian + "h", data[14:16])[0]
            dims = struct.unpack(endian + "8q", data[16:80])
            vox_offset = struct.unpack(endian + "q", data[168:176])[0]
            scl = struct.unpack(endian + "2d", data[176:192])
            text = {
                "descrip": _cstr(data[240:320]),
                "aux_file": _cstr(data[320:344]),
                "intent_name": _cstr(data[508:524]),
            }
            return {
                "version": 2,
                "endian": endian,
                "datatype": datatype,
                "dims": dims,
                "bitpix": bitpix,
                "vox_offset": vox_offset,
                "scaled": _scaled(*scl),
                "text": text,
                "hdr": 540,
            }
    raise ValueError("not a NIfTI header")


def nifti_extension_text(ext: bytes, endian: str) -> str:
    """Each header extension's text as printable and UTF-16 runs, and inflated when it is a
    gzip or zlib stream (1 MiB at most each): a job can compress what it hides there."""
    texts: list[str] = []
    pos = 0
    while pos + 8 <= len(ext) and len(texts) < 200:
        esize, _code = struct.unpack(f"{endian}ii", ext[pos : pos + 8])
        if esize < 16 or esize % 16:
            break
        content = ext[pos + 8 : pos + esize]
        texts.append(binary_text(content))
        with contextlib.suppress(zlib.error):
            texts.append(binary_text(zlib.decompressobj(47).decompress(content, 1 << 20)))
        pos += esize
    return "\n".join(t for t in texts if t)


def check_nifti(data: bytes, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """NIfTI header text, header extensions, volume size and bytes after the voxel data."""
    out: list[CheckResult] = []
    try:
        hdr = nifti_header(data)
    except (ValueError, struct.error) as exc:
        return [CheckResult(check="nifti", outcome="block", reason=f"unreadable NIfTI header: {exc}")]
    ndim = hdr["dims"][0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in hdr["dims"][1 : ndim + 1]) or hdr["bitpix"] <= 0:
        return [
            CheckResult(check="nifti", outcome="block", reason=f"implausible NIfTI dimensions {hdr['dims']}")
        ]
    shape = list(hdr["dims"][1 : ndim + 1])
    expected_end = int(hdr["vox_offset"]) + math.prod(shape) * hdr["bitpix"] // 8
    evidence: dict[str, Any] = {"nifti_version": hdr["version"], "shape": shape, "bitpix": hdr["bitpix"]}
    fields = {k: v for k, v in hdr["text"].items() if v}
    if DCM2NIIX_DESCRIP.fullmatch(fields.get("descrip", "")):
        fields.pop("descrip")  # dcm2niix's acquisition summary (TE=..;Time=..): no free text
    hdr_size = hdr["hdr"]
    if len(data) >= hdr_size + 4 and data[hdr_size] != 0:
        ext = data[hdr_size + 4 : int(hdr["vox_offset"])]
        fields["extensions"] = ext.decode("latin-1")
    if fields:
        searched_only = None
        if "extensions" in fields:
            inner = nifti_extension_text(fields["extensions"].encode("latin-1"), hdr["endian"])
            searched_only = {"extensions (decoded)": inner} if inner else None
        out.extend(_metadata_results(fields, policy, context, "NIfTI", searched_only))
    if len(data) < expected_end:
        out.append(
            CheckResult(
                check="nifti",
                outcome="block",
                reason=f"NIfTI file is truncated: {len(data)} bytes, header promises {expected_end}",
                evidence=evidence,
            )
        )
    elif len(data) > expected_end:
        out.append(
            CheckResult(
                check="trailing_data",
                outcome=action_outcome(policy.files.trailing_data),
                reason=f"{len(data) - expected_end} bytes follow the NIfTI voxel data",
                evidence={**evidence, "offset": expected_end, "bytes": len(data) - expected_end},
            )
        )
    if len(data) >= expected_end:
        out.extend(check_volume(data, hdr, shape, policy, context))
    rules = policy.image
    if len(shape) >= 2 and (shape[0] > rules.max_width or shape[1] > rules.max_height):
        out.append(
            CheckResult(
                check="image_size",
                outcome=action_outcome(rules.oversize),
                reason=f"volume in-plane size {shape[0]}x{shape[1]} exceeds "
                f"{rules.max_width}x{rules.max_height}",
                evidence=evidence,
            )
        )
    if not [r for r in out if r.outcome != "pass"]:
        out.append(
            CheckResult(
                check="nifti",
                outcome="pass",
                reason=f"NIfTI volume {shape}, no free header text",
                evidence=evidence,
            )
        )
    return out
