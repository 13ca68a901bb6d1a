"""PNG/JPEG metadata, decodability and size; NIfTI header text, extensions and trailing bytes."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from egress_review.checks import CheckContext, CheckResult, run_checks, worst
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
IDS = CheckContext(identifiers={"Doe^Jane", "Doe", "Jane", "MRN0012345"})


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("default", POLICIES)


def only(results: list[CheckResult], name: str) -> CheckResult:
    (found,) = [r for r in results if r.check == name]
    return found


def image(size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0]), dtype=np.uint8))


def save_png(path: Path, text: dict[str, str] | None = None, size: tuple[int, int] = (40, 30)) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    image(size).save(path, format="PNG", pnginfo=info)
    return path


def test_png_text_chunks_flagged_with_keys(tmp_path: Path, policy: Policy) -> None:
    path = save_png(
        tmp_path / "plot.png", {"Software": "matplotlib 3.9", "Comment": "run 7", "Author": "lab"}
    )
    results = run_checks(path, "plot.png", policy, IDS)
    meta = only(results, "image_metadata")
    assert meta.outcome == "flag"
    assert meta.evidence["keys"] == ["text:Author", "text:Comment"]  # Software is allowed by policy
    assert worst(results) == "flag"


def test_matplotlib_software_key_alone_passes(tmp_path: Path, policy: Policy) -> None:
    path = save_png(tmp_path / "plot.png", {"Software": "matplotlib version3.9.0, https://matplotlib.org/"})
    results = run_checks(path, "plot.png", policy, IDS)
    assert worst(results) == "pass", [r for r in results if r.outcome != "pass"]
    assert only(results, "image").evidence == {"format": "PNG", "width": 40, "height": 30}


def test_patient_name_in_png_metadata_blocks(tmp_path: Path, policy: Policy) -> None:
    path = save_png(tmp_path / "plot.png", {"Title": "Axial slice, DOE JANE"})
    results = run_checks(path, "plot.png", policy, IDS)
    ident = only(results, "image_metadata_identifiers")
    assert ident.outcome == "block" and "text:Title" in ident.reason


def test_jpeg_comment_and_exif_flagged(tmp_path: Path, policy: Policy) -> None:
    exif = Image.Exif()
    exif[0x010E] = "ImageDescription: MRN0012345 thorax"  # ImageDescription
    exif[0x013B] = "someone"  # Artist
    path = tmp_path / "photo.jpg"
    image().save(path, format="JPEG", exif=exif.tobytes(), comment=b"exported by viewer")
    results = run_checks(path, "photo.jpg", policy, IDS)
    meta = only(results, "image_metadata")
    assert {"comment", "exif:270", "exif:315"} <= set(meta.evidence["keys"])
    assert only(results, "image_metadata_identifiers").outcome == "block"


def test_oversize_image_flagged(tmp_path: Path) -> None:
    small = Policy.model_validate({"name": "s", "version": "1", "image": {"max_width": 32, "max_height": 32}})
    path = save_png(tmp_path / "wide.png", size=(64, 16))
    size = only(run_checks(path, "wide.png", small, CheckContext()), "image_size")
    assert size.outcome == "flag" and size.evidence["width"] == 64


def test_undecodable_image_blocks(tmp_path: Path, policy: Policy) -> None:
    good = io.BytesIO()
    image((64, 64)).save(good, format="PNG")
    raw = bytearray(good.getvalue())
    idat = raw.index(b"IDAT") + 4
    raw[idat : idat + 40] = b"\x00" * 40  # corrupt the compressed pixels, keep the chunk layout
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(raw))
    results = run_checks(path, "bad.png", policy, CheckContext())
    assert only(results, "image_decode").outcome == "block"


def nifti(shape: tuple[int, ...] = (4, 4, 2), descrip: bytes = b"", extension: bytes = b"") -> bytes:
    """A minimal little-endian NIfTI-1 single file (.nii) with uint8 voxels."""
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    dims = [len(shape), *shape] + [1] * (7 - len(shape))
    struct.pack_into("<8h", hdr, 40, *dims)
    struct.pack_into("<hh", hdr, 70, 2, 8)  # datatype uint8, bitpix 8
    ext_block = b""
    if extension:
        size = (8 + len(extension) + 15) // 16 * 16
        ext_block = struct.pack("<ii", size, 4) + extension.ljust(size - 8, b"\x00")
    vox_offset = 352 + len(ext_block)
    struct.pack_into("<f", hdr, 108, float(vox_offset))
    struct.pack_into("<f", hdr, 112, 1.0)  # scl_slope
    hdr[148 : 148 + len(descrip)] = descrip
    hdr[344:348] = b"n+1\x00"
    flag = b"\x01\x00\x00\x00" if extension else b"\x00\x00\x00\x00"
    voxels = bytes(int(np.prod(shape)))
    return bytes(hdr) + flag + ext_block + voxels


def test_clean_nifti_and_nii_gz_pass(tmp_path: Path, policy: Policy) -> None:
    plain = tmp_path / "mask.nii"
    plain.write_bytes(nifti())
    packed = tmp_path / "mask.nii.gz"
    packed.write_bytes(gzip.compress(nifti()))
    for path in (plain, packed):
        results = run_checks(path, path.name, policy, IDS)
        assert worst(results) == "pass", [r for r in results if r.outcome != "pass"]
        assert only(results, "file_type").evidence["detected"] == "nifti"
        assert only(results, "nifti").evidence["shape"] == [4, 4, 2]


def test_nifti_descrip_with_patient_name_blocks(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "seg.nii.gz"
    path.write_bytes(gzip.compress(nifti(descrip=b"Doe^Jane CT 2019")))
    results = run_checks(path, path.name, policy, IDS)
    assert only(results, "image_metadata_identifiers").outcome == "block"
    assert "descrip" in only(results, "image_metadata").evidence["keys"]


def test_nifti_extension_is_flagged(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "seg.nii"
    path.write_bytes(nifti(extension=b"<xml>private notes</xml>"))
    results = run_checks(path, path.name, policy, CheckContext())
    assert "extensions" in only(results, "image_metadata").evidence["keys"]


def test_nifti_trailing_bytes_and_truncation(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "seg.nii"
    path.write_bytes(nifti() + b"hidden payload")
    trailing = only(run_checks(path, path.name, policy, CheckContext()), "trailing_data")
    assert trailing.outcome == "block" and trailing.evidence["bytes"] == len(b"hidden payload")
    path.write_bytes(nifti()[:-5])
    assert only(run_checks(path, path.name, policy, CheckContext()), "nifti").outcome == "block"


def test_gzip_bomb_is_refused(tmp_path: Path) -> None:
    tiny = Policy.model_validate({"name": "t", "version": "1", "files": {"max_uncompressed_bytes": 10_000}})
    path = tmp_path / "big.nii.gz"
    path.write_bytes(gzip.compress(nifti(shape=(100, 100, 10))))
    results = run_checks(path, path.name, tiny, CheckContext())
    assert only(results, "hidden_data").outcome == "block"
    assert "inflates to more than 10000 bytes" in only(results, "hidden_data").reason
