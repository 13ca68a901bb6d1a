"""The output transfer's two ends: what the collector packs, and what the host will unpack.

The host side treats the archive as hostile (the researcher controls /output), so these
tests hand it crafted archives with escapes, links and devices.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from tre.executors.kubernetes.tarstream import (
    MAX_HEADER_BYTES,
    OutputTooComplex,
    OutputTooLarge,
    TruncatedArchive,
    extract,
    pack,
)
from tre.safetar import tarfile as safe_tarfile


def test_pack_then_extract_roundtrip_skips_links(tmp_path: Path) -> None:
    src = tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    (src / "a.csv").write_bytes(b"x,y\n1,2\n")
    (src / "sub" / "m.nii").write_bytes(os.urandom(5000))
    (src / "link").symlink_to("/etc/passwd")
    buf = io.BytesIO()
    assert pack(src, buf, limit_bytes=10_000) == 5008
    buf.seek(0)
    written = extract(buf, tmp_path / "dest", limit_bytes=10_000)
    assert sorted(p.relative_to(tmp_path / "dest").as_posix() for p in written) == ["a.csv", "sub/m.nii"]
    assert (tmp_path / "dest" / "sub" / "m.nii").read_bytes() == (src / "sub" / "m.nii").read_bytes()
    assert not (tmp_path / "dest" / "link").exists()


def test_pack_enforces_the_limit(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"\0" * 2048)
    with pytest.raises(OutputTooLarge):
        pack(tmp_path, io.BytesIO(), limit_bytes=1024)


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_extract_refuses_parent_escapes(tmp_path: Path) -> None:
    # The filter's error: backports.tarfile's on a Python before 3.11.4 (tre.safetar).
    with pytest.raises(safe_tarfile.TarError):
        extract(_tar(_file("../escape.txt", b"x")), tmp_path / "dest", limit_bytes=1000)
    assert not (tmp_path / "escape.txt").exists()


def test_extract_keeps_absolute_names_inside_dest(tmp_path: Path) -> None:
    target = tmp_path / "abs.txt"  # where an unfiltered extract would write
    written = extract(_tar(_file(str(target), b"x")), tmp_path / "dest", limit_bytes=1000)
    assert not target.exists()
    assert written == [tmp_path / "dest" / str(target).lstrip("/")]


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_extract_refuses_links_and_devices(tmp_path: Path, kind: bytes) -> None:
    info = tarfile.TarInfo("x")
    info.type = kind
    info.linkname = "/etc/shadow"
    with pytest.raises(ValueError, match="non-regular"):
        extract(_tar((info, None)), tmp_path / "dest", limit_bytes=1000)


def test_extract_enforces_the_limit_even_if_the_pod_lied(tmp_path: Path) -> None:
    with pytest.raises(OutputTooLarge):
        extract(_tar(_file("a", b"1" * 600), _file("b", b"2" * 600)), tmp_path / "d", limit_bytes=1000)


def test_extract_refuses_an_archive_cut_at_a_member_boundary(tmp_path: Path) -> None:
    """Without its end-of-archive block a cut tar reads as a complete shorter one: refused."""
    whole = _tar(_file("a.csv", b"1" * 700), _file("b.csv", b"2" * 10)).getvalue()
    cut = whole[: 512 + 1024]  # header + padded data of a.csv only
    with pytest.raises(TruncatedArchive, match="end-of-archive"):
        extract(io.BytesIO(cut), tmp_path / "d", limit_bytes=10_000)
    with pytest.raises(TruncatedArchive, match="inside a file"):
        extract(io.BytesIO(whole[:600]), tmp_path / "d2", limit_bytes=10_000)
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_extract_caps_extended_headers_before_tarfile_reads_them(tmp_path: Path) -> None:
    info = tarfile.TarInfo("x")
    info.pax_headers = {"comment": "c" * (MAX_HEADER_BYTES + 10)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b""))
    buf.seek(0)
    with pytest.raises(OutputTooComplex, match="extended header"):
        extract(buf, tmp_path / "d", limit_bytes=1000)


def test_extract_follows_pax_size_overrides(tmp_path: Path) -> None:
    """A PAX `size` record changes where the next header is; the checker must follow it."""
    info = tarfile.TarInfo("big")
    info.size = 1500
    info.pax_headers = {"size": "1500"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"z" * 1500))
        small = tarfile.TarInfo("small")
        small.size = 2
        tar.addfile(small, io.BytesIO(b"ok"))
    buf.seek(0)
    written = extract(buf, tmp_path / "d", limit_bytes=10_000)
    assert [p.name for p in written] == ["big", "small"]


def test_extract_caps_the_member_count(tmp_path: Path) -> None:
    from tre.executors.kubernetes import tarstream

    members = [_file(f"f{i}", b"") for i in range(5)]
    archive = _tar(*members)
    with pytest.raises(OutputTooComplex):
        tarstream.check_archive(archive, max_entries=4)
    assert tarstream.check_archive(_tar(*members), max_entries=5) == 5
