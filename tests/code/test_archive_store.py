"""Code archives: every hostile entry is refused with its reason and nothing is stored; the
quota bounds bytes and entries (a gzip bomb included); accepted archives are stored once per
SHA-256 and unpacked once into a read-only tree; folders pack deterministically."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests.code.hostile import file, folder, link, special, targz
from tre.code.archive import CodeLimits, CodeRefused, CodeTooLarge, inspect_archive, pack_folder
from tre.code.store import CodeStore
from tre.config import Settings

HOSTILE = {
    "absolute path": (targz(file("/etc/cron.d/x")), "is an absolute path"),
    "dot-dot": (targz(file("ok.py"), file("a/../../escape.py")), "contains '..'"),
    "absolute symlink": (targz(link("passwd", "/etc/passwd")), "points to an absolute path"),
    "escaping relative symlink": (
        targz(folder("a"), link("a/up", "../../etc")),
        "symbolic link 'a/up' points outside the archive",
    ),
    "symlink chain escape": (
        targz(link("b", "."), link("a", "b"), link("c", "a/..")),
        "symbolic link 'c' points outside the archive",
    ),
    "write through a symlink": (
        targz(folder("d"), link("l", "d"), file("l/x.py")),
        "goes through the symbolic link 'l'",
    ),
    "hard link outside": (
        targz(link("h", "etc/shadow", tarfile.LNKTYPE)),
        "not a file earlier in the archive",
    ),
    "hard link with dot-dot": (targz(link("h", "../outside", tarfile.LNKTYPE)), "contains '..'"),
    "character device": (targz(special("null", tarfile.CHRTYPE)), "is a device node"),
    "block device": (targz(special("sda", tarfile.BLKTYPE)), "is a device node"),
    "fifo": (targz(special("pipe", tarfile.FIFOTYPE)), "is a FIFO"),
    "setuid": (targz(file("run", mode=0o4755)), "setuid or setgid"),
    "setgid": (targz(file("run", mode=0o2755)), "setuid or setgid"),
    "duplicate": (targz(file("a.py"), link("a.py", "b.py")), "appears twice"),
    "duplicate through ./": (targz(file("a.py"), file("./a.py")), "appears twice"),
    "file over an implied folder": (
        targz(file("lib/x.py"), file("lib")),
        "entry 'lib' is not a folder, but other entries are inside it",
    ),
    "symlink over an implied folder": (
        targz(file("lib/x.py"), link("lib", "/")),
        "entry 'lib' is not a folder",
    ),
    "control characters": (targz(file("evil\x1b]0;pwned\x07.py")), "control characters"),
    # Redteam round 15: a C1 control (CSI, U+009B), a bidirectional override, a zero-width
    # space and a line separator, in a name or a link's target, were accepted.
    "C1 control character": (targz(file("evil\x9b31mred.py")), "control characters"),
    "bidirectional override": (targz(file("report\u202egnp.py")), "control characters"),
    "zero-width space": (targz(file("ana\u200blysis.py")), "control characters"),
    "line separator": (targz(file("a\u2028b.py")), "control characters"),
    "formatting in a link target": (targz(file("a.py"), link("b.py", "a\u202e.py")), "control characters"),
    "names differing only in case": (
        targz(file("Analysis.py"), file("analysis.py")),
        "differ only in letter case or Unicode normalisation",
    ),
    "names differing only in normalisation": (
        targz(file("caf\u00e9.py"), file("cafe\u0301.py")),
        "differ only in letter case or Unicode normalisation",
    ),
    "folders differing only in case": (
        targz(file("Lib/a.py"), file("lib/b.py")),
        "entries 'Lib' and 'lib' differ only in letter case",
    ),
    "ligature against its letters": (
        targz(file("STRASSE.py"), file("stra\u00dfe.py")),
        "differ only in letter case",
    ),
    "not gzip": (b"PK\x03\x04 this is a zip file, not a tar.gz" * 10, "not a valid gzip-compressed tar"),
    "gzip of garbage": (__import__("gzip").compress(os.urandom(4096)), "not a valid gzip-compressed tar"),
}


@pytest.fixture
def store(settings: Settings) -> CodeStore:
    return CodeStore(settings)


def _stored_anything(store: CodeStore) -> list[str]:
    return [p.name for d in (store.archives, store.trees, store.incoming) if d.exists() for p in d.iterdir()]


def _put(store: CodeStore, tmp_path: Path, data: bytes, limits: CodeLimits | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "code.tar.gz"
    path.write_bytes(data)
    return store.store_file(path, limits or CodeLimits())


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_with_its_reason_and_nothing_is_stored(
    case: str, store: CodeStore, tmp_path: Path
) -> None:
    data, reason = HOSTILE[case]
    with pytest.raises(CodeRefused) as info:
        _put(store, tmp_path, data)
    message = str(info.value)
    assert reason in message and "\n" not in message
    assert "\x1b" not in message
    assert _stored_anything(store) == []


def test_quota_bounds_entries_bytes_and_archive_size(store: CodeStore, tmp_path: Path) -> None:
    many = targz(*(file(f"f{i}.py") for i in range(11)))
    with pytest.raises(CodeTooLarge, match="more than 10 entries"):
        _put(store, tmp_path, many, CodeLimits(max_bytes=1 << 20, max_entries=10))
    _put(store, tmp_path, many, CodeLimits(max_bytes=1 << 20, max_entries=11))  # at the limit: fine

    # A gzip bomb: 64 MiB of zeros in a ~64 KiB archive is refused from the tar header.
    bomb = targz(file("zeros.bin", b"\0" * (64 << 20)))
    assert len(bomb) < 200_000
    with pytest.raises(CodeTooLarge, match="unpacks to more than 1 MiB"):
        _put(store, tmp_path, bomb, CodeLimits(max_bytes=1 << 20))

    noise = targz(file("noise.bin", os.urandom(300_000)))
    with pytest.raises(CodeTooLarge, match="larger than 0.25 MiB, the project's quota"):
        _put(store, tmp_path, noise, CodeLimits(max_bytes=256 * 1024))
    assert len(os.listdir(store.archives)) == 1  # only the accepted one


def test_same_archive_is_stored_once_and_unpacked_read_only(store: CodeStore, tmp_path: Path) -> None:
    data = targz(
        folder("pkg"),
        file("pkg/__init__.py", b""),
        file("analysis.py", b"import pkg\n", mode=0o777),
        link("latest.py", "analysis.py"),
        link("pkg/up.py", "../analysis.py"),
        link("copy.py", "analysis.py", tarfile.LNKTYPE),
    )
    first = _put(store, tmp_path, data)
    second = _put(store, tmp_path, data)
    assert first.sha256 == second.sha256 == hashlib.sha256(data).hexdigest()
    assert (first.deduplicated, second.deduplicated) == (False, True)
    assert os.listdir(store.archives) == [f"{first.sha256}.tar.gz"]
    assert store.archive_path(first.sha256).read_bytes() == data
    assert stat.S_IMODE(store.archive_path(first.sha256).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert [e.path for e in first.manifest.entries] == [
        "pkg",
        "pkg/__init__.py",
        "analysis.py",
        "latest.py",
        "pkg/up.py",
        "copy.py",
    ]

    tree = store.ensure_tree(first.sha256, CodeLimits())
    assert sorted(os.listdir(store.trees)) == [first.sha256]  # no leftovers from unpacking
    assert (tree / "analysis.py").read_bytes() == b"import pkg\n"
    assert os.readlink(tree / "latest.py") == "analysis.py"
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            if stat.S_ISLNK(st.st_mode):
                continue
            want = 0o755 if stat.S_ISDIR(st.st_mode) else 0o644
            assert stat.S_IMODE(st.st_mode) == want, name
            assert st.st_uid == os.geteuid()


def test_altered_archive_is_not_unpacked(store: CodeStore, tmp_path: Path) -> None:
    stored = _put(store, tmp_path, targz(file("a.py")))
    tree = store.tree_path(stored.sha256)
    import shutil

    shutil.rmtree(tree)
    store.archive_path(stored.sha256).chmod(0o600)
    store.archive_path(stored.sha256).write_bytes(targz(file("a.py", b"import os\n")))
    with pytest.raises(Exception, match="does not match its hash"):
        store.ensure_tree(stored.sha256, CodeLimits())
    assert not tree.exists()


def test_pack_folder_is_deterministic_and_refuses_what_the_server_refuses(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "analysis.py").write_text("print(1)\n")
    (src / "lib" / "util.py").write_text("X = 1\n")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (src / "link.py").symlink_to("analysis.py")

    def pack() -> bytes:
        out = io.BytesIO()
        pack_folder(src, out, CodeLimits())
        return out.getvalue()

    one = pack()
    os.utime(src / "analysis.py", (12345, 12345))
    (src / "lib" / "util.py").chmod(0o600)
    assert pack() == one
    manifest = inspect_archive(io.BytesIO(one), CodeLimits())
    assert [e.path for e in manifest.entries] == ["analysis.py", "lib", "lib/util.py", "link.py"]
    with tarfile.open(fileobj=io.BytesIO(one), mode="r:gz") as tar:
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in tar.getmembers()} == {(0, 0, "", "", 0)}

    (src / "out").symlink_to("/etc")
    with pytest.raises(CodeRefused, match="symbolic link 'out' points to an absolute path"):
        pack()
    (src / "out").unlink()
    os.mkfifo(src / "pipe")
    with pytest.raises(CodeRefused, match="'pipe' is a FIFO"):
        pack()
    (src / "pipe").unlink()
    (src / "big.bin").write_bytes(b"x" * 2048)
    with pytest.raises(CodeTooLarge):
        pack_folder(src, io.BytesIO(), CodeLimits(max_bytes=1024))


def test_folder_entry_after_its_files_is_fine(store: CodeStore, tmp_path: Path) -> None:
    stored = _put(store, tmp_path, targz(file("lib/x.py", b"X = 1\n"), folder("lib"), file("./run.py")))
    assert [e.path for e in stored.manifest.entries] == ["lib/x.py", "lib", "run.py"]
    tree = store.tree_path(stored.sha256)
    assert (tree / "lib" / "x.py").read_bytes() == b"X = 1\n" and (tree / "run.py").is_file()


def test_a_huge_pax_header_is_refused_without_reading_it(store: CodeStore, tmp_path: Path) -> None:
    """tarfile reads a PAX header's body into memory: a header over 1 MiB is refused from its
    size field, before its body is read (`tre.tarbounds`); the decompressed stream is capped too."""
    import gzip

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a.py")
        info.pax_headers = {"comment": "x" * (16 << 20)}
        tar.addfile(info, io.BytesIO(b""))
    bomb = gzip.compress(raw.getvalue(), mtime=0)
    assert len(bomb) < 100_000
    with pytest.raises(CodeTooLarge, match="extended tar header of 16777234 bytes"):
        _put(store, tmp_path, bomb, CodeLimits(max_bytes=1 << 20, max_entries=10))
    assert _stored_anything(store) == []


def test_file_capabilities_and_xattrs_in_an_archive_never_reach_the_tree(
    store: CodeStore, tmp_path: Path
) -> None:
    """A PAX record can carry `security.capability` (cap_setuid+ep) and other xattrs: the
    archive is accepted as code, but the unpacked tree holds plain 0644 files, no attribute."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("tool")
        info.size, info.mode = 4, 0o755
        info.pax_headers = {
            "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x80\x00\x00\x00",
            "SCHILY.xattr.user.note": "x",
        }
        tar.addfile(info, io.BytesIO(b"#!/b"))
    stored = _put(store, tmp_path, gzip.compress(raw.getvalue(), mtime=0))
    path = store.tree_path(stored.sha256) / "tool"
    assert os.listxattr(path, follow_symlinks=False) == []
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


@pytest.mark.parametrize(
    "name",
    [
        "/".join(["d"] * 1500) + "/x.py",  # deeper than os.walk / shutil.rmtree can recurse
        "/".join(["n" * 250] * 16) + "/x.py",  # 4 KiB: over PATH_MAX once under the store
    ],
    ids=["deep", "long"],
)
def test_a_tree_too_deep_or_too_long_to_unpack_is_refused(
    store: CodeStore, tmp_path: Path, name: str
) -> None:
    """Redteam round 14: a code archive of 1,500 nested folders made the unpack raise
    RecursionError (os.walk) and left its scratch folder (shutil.rmtree recursed too); one
    whose path fitted the 4 KiB bound by itself ran into ENAMETOOLONG below the store's own
    folder. Both were internal errors, not a reason."""
    with pytest.raises(CodeRefused) as info:
        _put(store, tmp_path, targz(file(name)))
    assert "\n" not in str(info.value)
    assert _stored_anything(store) == []


def test_a_folder_with_lookalike_names_is_refused_before_upload(tmp_path: Path) -> None:
    """`tre submit --code DIR` refuses locally what the server refuses: two files whose names
    differ only in case (redteam round 15), with one line naming both."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "Analysis.py").write_text("print(1)\n")
    (folder / "analysis.py").write_text("print(2)\n")
    with pytest.raises(CodeRefused) as info:
        pack_folder(folder, io.BytesIO(), CodeLimits())
    assert "'Analysis.py' and 'analysis.py' differ only in letter case" in str(info.value)


@pytest.mark.parametrize("measure", ["bytes", "entries"])
def test_a_code_folder_over_the_quota_names_what_fills_it(tmp_path: Path, measure: str) -> None:
    """Newcomer round 22: 'holds more than 1 MiB, the project's quota' named neither the file
    (their scan, their results) nor a way out. Now the largest (only those that matter beside
    the largest: not the 20-byte script) and what to do, in one line."""
    work = tmp_path / "analysis"
    (work / "results").mkdir(parents=True)
    (work / "analysis.py").write_text("print('hello')\n")
    (work / "scan.nii").write_bytes(b"\0" * (3 << 20))
    (work / "results" / "old.nii").write_bytes(b"\0" * (1 << 20))
    for i in range(20):
        (work / "results" / f"r{i}.csv").write_text("x\n")
    limits = CodeLimits(max_bytes=2 << 20) if measure == "bytes" else CodeLimits(max_entries=12)
    with pytest.raises(CodeTooLarge) as refused:
        pack_folder(work, io.BytesIO(), limits)
    named = (
        "; the largest: scan.nii (3.0 MiB), results/old.nii (1.0 MiB)."
        if measure == "bytes"
        else "; the largest: results (22 entries)."
    )
    quota = (
        "holds more than 2 MiB"
        if measure == "bytes"
        else "has more than 12 entries (files, folders and links)"
    )
    assert str(refused.value) == (
        f"the code folder {work.resolve()} {quota}, the project's quota{named} Leave data and results "
        "out of it (the job reads its datasets at /data and writes to /output), or ask an admin to "
        "raise the quota (tre project set-quota)"
    )
