"""Layers and archives that tarfile (our checks) and Go's archive/tar (umoci, skopeo) would
read as different archives. Where the two parsers disagree on one header they disagree on
where the next one starts, and every check of the layer then looked at something other than
what umoci unpacked: a 4 KiB layer whose first size field began with a NUL showed tarfile
two harmless files, while umoci unpacked a 256 MiB sparse file (written out in full, no
sparse check saw it) and a file no check had read (review round 12). Each spelling both
readers do not read alike is refused; the ones real tools write still import."""

from __future__ import annotations

import io
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from tests.images.conftest import store_is_empty
from tests.images.imagekit import add_file, crafted_oci_archive, layer_tar, sha
from tre.images.errors import ImageRejected
from tre.images.store import ImageStore
from tre.tarbounds import BoundedTarInfo, StrictTarInfo, TarBoundExceeded


def header(
    name: bytes,
    size: int | bytes = 0,
    kind: bytes = b"0",
    magic: bytes = b"ustar\x0000",
    prefix: bytes = b"",
    linkname: bytes = b"",
    mode: bytes = b"0000644\x00",
) -> bytes:
    """One 512-byte tar header block, written by hand (fields exactly as given)."""
    assert len(mode) == 8 and (isinstance(size, int) or len(size) == 12)
    b = bytearray(512)
    b[0 : len(name)] = name
    b[100:108] = mode
    b[108:116] = b"0000000\x00"
    b[116:124] = b"0000000\x00"
    b[124:136] = size if isinstance(size, bytes) else b"%011o\x00" % size
    b[136:148] = b"00000000000\x00"
    b[156:157] = kind
    b[157 : 157 + len(linkname)] = linkname
    b[257:265] = magic
    b[345 : 345 + len(prefix)] = prefix
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\x00 " % sum(b)
    return bytes(b)


def data(payload: bytes) -> bytes:
    return payload + bytes(-len(payload) % 512)


def pax(records: dict[str, str], kind: bytes = b"x") -> bytes:
    body = b""
    for key, value in records.items():
        rec = f" {key}={value}\n".encode()
        n = len(rec) + 1
        while n != len(rec) + len(str(n)):  # the length counts its own digits
            n = len(rec) + len(str(n))
        body += str(n).encode() + rec
    return header(b"PaxHeader", len(body), kind) + data(body)


END = bytes(1024)


def hidden_behind_a_nul_size(hidden: bytes) -> bytes:
    """tarfile reads ``a`` as empty and the next block as a file ``decoy`` whose data is
    ``hidden``; Go reads ``a`` as 512 bytes (the decoy header) and then ``hidden``'s entries."""
    body = hidden
    while body.endswith(bytes(512)):
        body = body[:-512]
    decoy = header(b"decoy", len(body))
    return header(b"a", b"\x00" + b"%010o\x00" % 512) + decoy + body + END


def _members(layer: bytes, tarinfo: type[tarfile.TarInfo] = StrictTarInfo) -> list[tuple[str, int]]:
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r|", tarinfo=tarinfo) as tar:
        return [(m.name, m.size) for m in tar]


HIDDEN = layer_tar(lambda t: add_file(t, "hidden-from-the-checks", b"unseen"))

AMBIGUOUS = {
    # Numeric fields: tarfile stops at the first NUL, Go trims NULs from both ends.
    "a size field starting with NUL": (hidden_behind_a_nul_size(HIDDEN), "size field"),
    "a mode field starting with NUL": (header(b"f", 1, mode=b"\x000004755") + data(b"x") + END, "mode field"),
    # tarfile joins the prefix field to the name in every format, Go only in POSIX ustar.
    "a GNU header with a name prefix": (
        header(b"passwd", 1, magic=b"ustar  \x00", prefix=b"harmless") + data(b"x") + END,
        "prefix",
    ),
    "a V7 header with a name prefix": (
        header(b"passwd", 1, magic=bytes(8), prefix=b"harmless") + data(b"x") + END,
        "prefix",
    ),
    # A V7 regular file: tarfile decides file or folder before a PAX path, Go after.
    "a V7 regular-file type": (
        pax({"path": "d"}) + header(b"d/", 512, kind=b"\x00") + data(b"x" * 512) + END,
        "V7",
    ),
    # Global headers: tarfile applies them to every later member, Go to none.
    "a global PAX path": (pax({"path": "elsewhere"}, b"g") + header(b"f", 1) + data(b"x") + END, "global"),
    "a global PAX size": (pax({"size": "0"}, b"g") + header(b"f", 512) + data(b"x") + END, "global"),
    # Solaris extended headers: tarfile applies them, Go reads a file.
    "a Solaris extended header": (pax({"path": "g"}, b"X") + header(b"f", 1) + data(b"x") + END, "Solaris"),
    # Two headers for one member: tarfile lets the first win, Go the last.
    "two PAX headers": (pax({"path": "a"}) + pax({"path": "b"}) + header(b"f", 1) + data(b"x") + END, "two"),
    "two GNU long names": (
        header(b"././@LongLink", 2, b"L")
        + data(b"a\x00")
        + header(b"././@LongLink", 2, b"L")
        + data(b"b\x00")
        + header(b"f", 1)
        + data(b"x")
        + END,
        "two",
    ),
    # A PAX path and a GNU long name: tarfile lets the outer one win, Go the long name.
    "a PAX path around a GNU long name": (
        pax({"path": "a"})
        + header(b"././@LongLink", 2, b"L")
        + data(b"b\x00")
        + header(b"f", 1)
        + data(b"x")
        + END,
        "both",
    ),
    "a GNU long name around a PAX path": (
        header(b"././@LongLink", 2, b"L")
        + data(b"b\x00")
        + pax({"path": "a"})
        + header(b"f", 1)
        + data(b"x")
        + END,
        "both",
    ),
    # PAX numbers tarfile's int() reads and Go's ParseInt does not (or reads otherwise).
    "a PAX size with an underscore": (
        pax({"size": "5_12"}) + header(b"f", 1) + data(b"x") + END,
        "plain number",
    ),
    # Sparse members in the PAX 0.0/0.1 formats (tarfile then yields an ordinary file) and
    # GNU.sparse.name, which tarfile always applies as the name and Go only to sparse files.
    "a PAX 0.1 sparse member": (
        pax({"GNU.sparse.map": "0,1", "GNU.sparse.size": "1073741824"}) + header(b"f", 1) + data(b"x") + END,
        "sparse",
    ),
    "a GNU.sparse.name record": (
        pax({"GNU.sparse.name": "other"}) + header(b"f", 1) + data(b"x") + END,
        "sparse",
    ),
}


@pytest.mark.parametrize("case", sorted(AMBIGUOUS))
def test_a_header_the_two_readers_disagree_on_is_refused(case: str) -> None:
    layer, word = AMBIGUOUS[case]
    with pytest.raises(TarBoundExceeded) as info:
        _members(layer)
    assert word in str(info.value), str(info.value)


def test_the_nul_size_layer_really_reads_differently() -> None:
    """What made it dangerous: tarfile alone never sees the hidden entry (Go does; the
    import test below shows umoci unpacking it before the fix)."""
    layer = hidden_behind_a_nul_size(HIDDEN)
    assert [name for name, _ in _members(layer, BoundedTarInfo)] == ["a", "decoy"]


def test_an_image_hiding_entries_from_the_checks_is_refused(store: ImageStore, tmp_path: Path) -> None:
    """End to end: before, this imported, and its unpacked root held the hidden file."""
    layer = hidden_behind_a_nul_size(HIDDEN)
    blob = zlib.compress(layer, 9, wbits=31)
    archive = crafted_oci_archive(tmp_path / "hiding.tar", [blob], [sha(layer)])
    with pytest.raises(ImageRejected) as info:
        store.import_path(archive)
    reason = str(info.value)
    assert reason.startswith("layer 1 is refused") and "size field" in reason, reason
    assert "\n" not in reason and str(store.root) not in reason
    assert store_is_empty(store)


def test_an_image_archive_with_an_ambiguous_header_is_refused(store: ImageStore, tmp_path: Path) -> None:
    """skopeo reads the outer archive with Go's tar too."""
    archive = tmp_path / "outer.tar"
    archive.write_bytes(hidden_behind_a_nul_size(layer_tar(lambda t: add_file(t, "index.json", b"{}"))))
    with pytest.raises(ImageRejected, match="the archive is refused: it holds a tar header"):
        store.import_path(archive)
    assert store_is_empty(store)


@pytest.mark.parametrize("fmt", ["gnu", "pax", "ustar", "oldgnu", "posix"])
def test_what_gnu_tar_writes_is_read_alike(tmp_path: Path, fmt: str) -> None:
    """Long names (GNU long-name headers, PAX paths, ustar prefixes), links, folders, and
    large sizes as GNU tar writes them in each of its formats are accepted."""
    root = tmp_path / "root"
    deep = root / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / "f.txt").write_text("hello")
    (root / "link").symlink_to("big")
    (root / "big").write_bytes(b"\x01" * 70000)
    out = tmp_path / "t.tar"
    subprocess.run(["tar", f"--format={fmt}", "-C", str(root), "-cf", str(out), "."], check=True)
    names = [name for name, _ in _members(out.read_bytes())]
    assert any(n.endswith("f.txt") for n in names) and any(n.endswith("link") for n in names)


def test_what_python_and_git_archive_write_is_read_alike(tmp_path: Path) -> None:
    """tarfile's own formats, and git archive's global header holding only the commit id."""
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
            add_file(tar, "x" * 50 + "/" + "y" * 80, b"data")
        assert _members(buf.getvalue())[0][1] == 4
    git_style = (
        pax({"comment": "0123456789abcdef0123456789abcdef01234567"}, b"g")
        + header(b"f", 1)
        + data(b"x")
        + END
    )
    assert _members(git_style) == [("f", 1)]
