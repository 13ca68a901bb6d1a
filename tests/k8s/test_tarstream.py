"""The output transfer's two ends: what the collector packs, and what the host will unpack.

The host side treats the archive as hostile (the researcher controls /output), so these
tests hand it crafted archives with escapes, links and devices.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tre.executors.kubernetes.tarstream import OutputTooLarge, extract, pack


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


def test_module_entry_point_writes_a_tar_to_stdout(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("42\n")
    out = subprocess.run(
        [sys.executable, "-m", "tre.executors.kubernetes.tarstream", str(tmp_path)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        assert tar.extractfile("r.txt").read() == b"42\n"  # type: ignore[union-attr]


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
    with pytest.raises(tarfile.TarError):
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
