"""Raster images (PNG, JPEG, GIF, TIFF...) and NIfTI volumes: decodability, size, metadata.

Plots are the most common output and the easiest place to hide text: PNG tEXt chunks, JPEG
COM segments and EXIF survive every viewer invisibly. NIfTI headers have free-text fields
(``descrip``, ``aux_file``, ``intent_name``) that conversion tools fill with series
descriptions, sometimes patient names. The decoded pixels themselves cannot be judged
automatically (a screenshot of a table is still a table) and are left to the reviewers.
"""

from __future__ import annotations

import math
import struct
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from egress_review.checks.identifiers import IdentifierMatcher
from egress_review.checks.model import CheckContext, CheckResult, action_outcome, mask
from tre.policy import Policy

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
        found[f"exif:{tag}"] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    for ifd_tag in (0x8769, 0x8825):  # Exif sub-IFD, GPS IFD
        try:
            sub = exif.get_ifd(ifd_tag)
        except (KeyError, ValueError, struct.error):
            continue
        for tag, value in sub.items():
            found[f"exif:{ifd_tag:#x}:{tag}"] = str(value)
    for key, value in img.info.items():
        if key not in STRUCTURAL_KEYS and f"text:{key}" not in found:
            found[f"info:{key}"] = str(value)[:200]
    return found


def _metadata_results(
    fields: dict[str, str], policy: Policy, context: CheckContext, what: str
) -> list[CheckResult]:
    allowed = {k.lower() for k in policy.image.allowed_metadata_keys}
    out: list[CheckResult] = []
    matcher = IdentifierMatcher(context.identifiers, policy.text)
    if matcher:
        hits = [(key, h) for key, value in fields.items() for h in matcher.find(value)]
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
                evidence={"keys": sorted(shown), "lengths": {k: len(v) for k, v in shown.items()}},
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
                fmt = img.format or "image"
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
    out.extend(_metadata_results(fields, policy, context, fmt))
    if not out:
        out.append(
            CheckResult(
                check="image",
                outcome="pass",
                reason=f"{fmt} {width}x{height}, no metadata",
                evidence=evidence,
            )
        )
    return out


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def nifti_header(data: bytes) -> dict[str, Any]:
    """The NIfTI-1/2 header fields that matter here (endianness detected from sizeof_hdr)."""
    for endian in "<>":
        (size,) = struct.unpack(endian + "i", data[:4])
        if size == 348:
            dims = struct.unpack(endian + "8h", data[40:56])
            bitpix = struct.unpack(endian + "h", data[72:74])[0]
            vox_offset = struct.unpack(endian + "f", data[108:112])[0]
            text = {
                "db_name": _cstr(data[14:32]),
                "descrip": _cstr(data[148:228]),
                "aux_file": _cstr(data[228:252]),
                "intent_name": _cstr(data[328:344]),
            }
            return {
                "version": 1,
                "dims": dims,
                "bitpix": bitpix,
                "vox_offset": vox_offset,
                "text": text,
                "hdr": 348,
            }
        if size == 540:
            bitpix = struct.unpack(endian + "h", data[14:16])[0]
            dims = struct.unpack(endian + "8q", data[16:80])
            vox_offset = struct.unpack(endian + "q", data[168:176])[0]
            text = {
                "descrip": _cstr(data[240:320]),
                "aux_file": _cstr(data[320:344]),
                "intent_name": _cstr(data[508:524]),
            }
            return {
                "version": 2,
                "dims": dims,
                "bitpix": bitpix,
                "vox_offset": vox_offset,
                "text": text,
                "hdr": 540,
            }
    raise ValueError("not a NIfTI header")


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
    hdr_size = hdr["hdr"]
    if len(data) >= hdr_size + 4 and data[hdr_size] != 0:
        ext = data[hdr_size + 4 : int(hdr["vox_offset"])]
        fields["extensions"] = ext.decode("latin-1")
    if fields:
        out.extend(_metadata_results(fields, policy, context, "NIfTI"))
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
    if not out:
        out.append(
            CheckResult(
                check="nifti",
                outcome="pass",
                reason=f"NIfTI volume {shape}, no header text",
                evidence=evidence,
            )
        )
    return out
