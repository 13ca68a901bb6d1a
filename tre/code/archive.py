"""What a code archive may hold, decided before anything is stored or unpacked.

A code archive is a gzip-compressed tar written by the researcher (or by `tre submit --code`
from a folder). Everything in it is hostile until checked: an absolute or ``..`` path would
write outside the tree it is unpacked into, a symbolic or hard link could make a path inside
the tree mean a host file, device nodes and FIFOs have no business in code, and setuid or
setgid bits ask for privilege. Each refusal carries one sentence naming the entry and the
rule, so a researcher can fix the archive. The same `inspect_archive` runs in the CLI before
upload, on the server after upload, and again just before every unpack.

Extraction then uses the standard library's ``data`` filter as a second, independent line
(it refuses the same escapes), and normalises every file to 0644 and every folder to 0755 with
no owner taken from the archive.
"""

from __future__ import annotations

import gzip
import os
import stat
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tre.errors import Unprocessable
from tre.safetar import tarfile
from tre.tarbounds import TarBoundExceeded, TarHeaderTooLarge, bounded_tarinfo

MIB = 1024 * 1024
# Defaults of the per-project quota (Project.max_code_mb / max_code_files).
DEFAULT_MAX_CODE_MB = 50
DEFAULT_MAX_CODE_FILES = 10_000
# A path's bytes and folders deep, each with room to spare for where the tree is unpacked:
# the kernel's PATH_MAX (4096) counts the store's own folder too (a 4,000-byte path inside
# the 4,096 bound failed with ENAMETOOLONG under ``$TRE_HOME/code/trees``), and the walkers
# that finish and remove a tree (``os.walk``, ``shutil.rmtree``) recurse one Python frame
# per level (1,500 nested folders raised RecursionError and left the scratch folder behind;
# redteam round 14). The same bounds as an image's layers (`tre.images.layers`).
MAX_PATH_BYTES = 3072
MAX_DEPTH = 256
MAX_NAME_BYTES = 255
MAX_LINK_DEPTH = 40
# tarfile's TarInfo with header bounds (tre.tarbounds), from the module tre.safetar chose.
BoundedTarInfo = bounded_tarinfo(tarfile.TarInfo)
# A folder that exists only because entries are inside it (no entry of its own yet).
IMPLIED_DIR = "implied-dir"
# Folders `tre submit --code DIR` leaves out: version-control metadata and bytecode caches are
# not part of an analysis and can dwarf it.
PACK_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})


class CodeRefused(Unprocessable):
    """The archive breaks a rule; nothing of it is stored."""

    title = "Code archive refused"
    slug = "code-refused"


class CodeTooLarge(CodeRefused):
    """The archive (or what it unpacks to) is over the project's code quota."""

    status = 413
    title = "Code archive too large"
    slug = "code-too-large"


@dataclass(frozen=True)
class CodeLimits:
    """A project's code quota: bytes (of the archive, and of the files it unpacks to) and entries."""

    max_bytes: int = DEFAULT_MAX_CODE_MB * MIB
    max_entries: int = DEFAULT_MAX_CODE_FILES

    @classmethod
    def of_project(cls, max_code_mb: int, max_code_files: int) -> CodeLimits:
        return cls(max_bytes=max_code_mb * MIB, max_entries=max_code_files)

    @classmethod
    def ceiling(cls) -> CodeLimits:
        """The largest quota an admin can set: for archives already accepted under a quota."""
        return cls(max_bytes=1024 * MIB, max_entries=1_000_000)

    def describe_bytes(self) -> str:
        return f"{self.max_bytes / MIB:g} MiB"


@dataclass(frozen=True)
class CodeEntry:
    """One entry of an accepted archive: a file, folder, symbolic link or hard link."""

    path: str
    kind: str
    size: int = 0
    target: str | None = None


@dataclass
class CodeManifest:
    """What an accepted archive holds, in archive order."""

    entries: list[CodeEntry] = field(default_factory=list)
    total_bytes: int = 0

    @property
    def entry_count(self) -> int:
        return len(self.entries)


def _unlistable(c: str) -> bool:
    """A character no name may hold: a control character (C0, DEL and the C1 range, whose
    CSI, U+009B, starts an escape sequence on terminals that honour 8-bit controls), a
    surrogate (a byte that was not UTF-8), a line or paragraph separator, or an invisible
    formatting character (bidirectional overrides and isolates, zero-width spaces and
    joiners, the soft hyphen): each makes a listing show another name than the one stored
    (``report\u202egnp.py`` reads as ``reportyp.png``). Redteam round 15: the C1 and
    formatting ones were accepted."""
    return unicodedata.category(c) in _UNLISTABLE


_UNLISTABLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _check_name(raw: str, what: str, link_target: bool = False) -> list[str]:
    """The path's components, or a refusal naming why the path is unsafe.

    A symbolic link's target may use ``..`` (``pkg/up.py -> ../analysis.py``); whether it
    stays inside the tree is decided by `_escapes` once every link is known.
    """
    shown = raw.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:200]
    if any(_unlistable(c) for c in raw):
        raise CodeRefused(
            f"{what} {shown!r} has control characters (or invisible formatting ones) or is not UTF-8"
        )
    if len(raw.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise CodeRefused(f"{what} {shown!r} is longer than {MAX_PATH_BYTES} bytes")
    if raw.startswith("/"):
        raise CodeRefused(f"{what} {shown!r} is an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts and not link_target:
        raise CodeRefused(f"{what} {shown!r} contains '..'")
    if any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
        raise CodeRefused(f"{what} {shown!r} has a name longer than {MAX_NAME_BYTES} bytes")
    if len(parts) > MAX_DEPTH:
        raise CodeRefused(f"{what} {shown!r} is nested deeper than {MAX_DEPTH} folders")
    return parts


def _escapes(links: dict[str, str], link_path: str) -> bool:
    """Whether following the symbolic link at ``link_path`` can leave the tree.

    Resolved component by component through the other links of the archive (a lexical
    ``normpath`` is not enough: ``a -> b`` with ``b -> .`` makes ``a/..`` the tree's parent).
    """
    steps = 0

    def walk(base: list[str], target: str) -> list[str] | None:
        nonlocal steps
        if target.startswith("/"):
            return None
        here = list(base)
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not here:
                    return None
                here.pop()
                continue
            here.append(part)
            joined = "/".join(here)
            if joined in links:
                steps += 1
                if steps > MAX_LINK_DEPTH:
                    return None
                resolved = walk(here[:-1], links[joined])
                if resolved is None:
                    return None
                here = resolved
        return here

    return walk(link_path.split("/")[:-1], links[link_path]) is None


class _Lookalikes:
    """Paths that differ only in letter case or Unicode normalisation (``Analysis.py`` and
    ``analysis.py``; ``café.py`` written as one code point or as ``e`` and a combining
    accent) are two files here but one name to read: a listing shows two identical-looking
    entries, a reviewer reads one and the job imports the other, and on a case-insensitive
    or normalising file system (macOS, Windows: where a downloaded archive is unpacked) one
    silently overwrites the other. Refused, naming both (redteam round 15)."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def claim(self, path: str) -> None:
        key = unicodedata.normalize("NFC", unicodedata.normalize("NFD", path).casefold())
        other = self._seen.setdefault(key, path)
        if other != path:
            raise CodeRefused(
                f"entries {other!r} and {path!r} differ only in letter case or Unicode "
                "normalisation, which look alike in listings and collide on case-insensitive "
                "file systems: rename one"
            )


def _bound_refusal(exc: TarBoundExceeded) -> CodeRefused:
    """A header too large to read is a size refusal (413); a sparse member a kind refusal."""
    if isinstance(exc, TarHeaderTooLarge):
        return CodeTooLarge(f"the code archive holds {exc}")
    return CodeRefused(f"the code archive holds {exc}, which code archives may not")


def _entries(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    try:
        for member in tar:
            tar.members.clear()  # type: ignore[attr-defined]  # a stream is read once: no list kept
            yield member
    except TarBoundExceeded as exc:
        raise _bound_refusal(exc) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise CodeRefused(f"the code archive is not a valid gzip-compressed tar ({exc})") from exc


class _Decompressed:
    """The archive's tar stream, refusing to decompress more than ``cap`` bytes in all.

    File sizes are checked from the headers, but tarfile reads a PAX or GNU long-name header's
    whole body into memory: without this cap a 50 MiB archive of one huge header would make
    the server decompress gigabytes into RAM.
    """

    def __init__(self, fileobj: BinaryIO, cap: int) -> None:
        self._gz = gzip.GzipFile(fileobj=fileobj, mode="rb")
        self.cap = cap
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        data = self._gz.read(size if size is not None and size >= 0 else 1 << 20)
        self.total += len(data)
        if self.total > self.cap:
            raise CodeTooLarge(
                f"the code archive decompresses to more than {self.cap / MIB:.1f} MiB of tar data, "
                "more than the project's quota allows"
            )
        return data

    def close(self) -> None:
        self._gz.close()


def _tar_stream_cap(limits: CodeLimits) -> int:
    """Decompressed bytes a compliant archive may need: its files plus headers and padding."""
    return limits.max_bytes + 4096 * limits.max_entries + MIB


def inspect_archive(fileobj: BinaryIO, limits: CodeLimits) -> CodeManifest:
    """Read the archive once, streaming, and return its entries, or raise `CodeRefused`.

    Sizes are checked from the headers before the data is read, and the decompressed stream
    is capped (`_Decompressed`), so a small archive that would decompress to gigabytes is
    refused without decompressing it.
    """
    manifest = CodeManifest()
    kinds: dict[str, str] = {}
    links: dict[str, str] = {}
    lookalikes = _Lookalikes()
    try:
        stream = _Decompressed(fileobj, _tar_stream_cap(limits))
        tar = tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo)  # type: ignore[call-overload]
    except TarBoundExceeded as exc:
        raise _bound_refusal(exc) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise CodeRefused(f"the code archive is not a valid gzip-compressed tar ({exc})") from exc
    with tar:
        for member in _entries(tar):
            parts = _check_name(member.name, "entry")
            path = "/".join(parts)
            if not parts:
                if member.isdir():
                    continue  # the archive's own root, "./"
                raise CodeRefused(f"entry {member.name!r} has no name")
            if kinds.get(path) == IMPLIED_DIR and not member.isdir():
                raise CodeRefused(f"entry {path!r} is not a folder, but other entries are inside it")
            if path in kinds and kinds[path] != IMPLIED_DIR:
                raise CodeRefused(f"entry {path!r} appears twice in the archive")
            lookalikes.claim(path)
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if kinds.get(parent) == "symlink":
                    raise CodeRefused(f"entry {path!r} goes through the symbolic link {parent!r}")
                if kinds.get(parent) in ("file", "hardlink"):
                    raise CodeRefused(f"entry {path!r} is inside the file {parent!r}")
                if parent not in kinds:
                    lookalikes.claim(parent)
                    kinds[parent] = IMPLIED_DIR
            if member.mode & (stat.S_ISUID | stat.S_ISGID):
                raise CodeRefused(f"entry {path!r} has the setuid or setgid bit set")
            if member.ischr() or member.isblk():
                raise CodeRefused(f"entry {path!r} is a device node")
            if member.isfifo():
                raise CodeRefused(f"entry {path!r} is a FIFO")
            if member.issparse():
                raise CodeRefused(f"entry {path!r} is a sparse file")
            entry: CodeEntry
            if member.isreg():
                entry = CodeEntry(path, "file", member.size)
            elif member.isdir():
                entry = CodeEntry(path, "dir")
            elif member.issym():
                if member.linkname.startswith("/"):
                    raise CodeRefused(
                        f"symbolic link {path!r} points to an absolute path, which the job cannot "
                        "reach: make it relative, or leave it out"
                    )
                _check_name(member.linkname, f"the target of symbolic link {path!r},", link_target=True)
                links[path] = member.linkname
                entry = CodeEntry(path, "symlink", target=member.linkname)
            elif member.islnk():
                target = "/".join(_check_name(member.linkname, f"the target of hard link {path!r},"))
                if kinds.get(target) != "file":
                    raise CodeRefused(
                        f"hard link {path!r} points to {target!r}, which is not a file earlier in the archive"
                    )
                entry = CodeEntry(path, "hardlink", target=target)
            else:
                raise CodeRefused(f"entry {path!r} is of a type code archives may not hold")
            kinds[path] = entry.kind
            manifest.entries.append(entry)
            manifest.total_bytes += entry.size
            if manifest.entry_count > limits.max_entries:
                raise CodeTooLarge(
                    f"the code archive has more than {limits.max_entries} entries (files, folders "
                    "and links), the project's quota"
                )
            if manifest.total_bytes > limits.max_bytes:
                raise CodeTooLarge(
                    f"the code archive unpacks to more than {limits.describe_bytes()}, the project's quota"
                )
    for path in links:
        if _escapes(links, path):
            raise CodeRefused(f"symbolic link {path!r} points outside the archive ({links[path][:200]!r})")
    return manifest


def inspect_file(path: Path, limits: CodeLimits) -> CodeManifest:
    """`inspect_archive` on a file, with its compressed size checked first."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise CodeTooLarge(
            f"the code archive is {size / MIB:.1f} MiB, over the project's quota of {limits.describe_bytes()}"
        )
    with path.open("rb") as fh:
        return inspect_archive(fh, limits)


def _normalised(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """The standard ``data`` filter, then fixed modes and no owner: the tree is read-only code."""
    checked = tarfile.data_filter(member, dest)
    mode = 0o755 if checked.isdir() else 0o644
    return checked.replace(mode=mode, uid=0, gid=0, uname="", gname="", deep=False)


def unpack(archive: Path, dest: Path, limits: CodeLimits) -> CodeManifest:
    """Check ``archive`` again and unpack it into the new folder ``dest`` (0755 folders, 0644 files)."""
    manifest = inspect_file(archive, limits)
    dest.mkdir(mode=0o755)
    try:
        with tarfile.open(archive, mode="r:gz", tarinfo=BoundedTarInfo) as tar:
            tar.extractall(dest, filter=_normalised)  # noqa: S202 - checked above and by the filter
    except (tarfile.FilterError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        raise CodeRefused(f"the code archive was refused while unpacking: {exc}") from exc
    for root, dirs, files in os.walk(dest):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)  # noqa: S103 - code is world-readable, never writable
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644)
    os.chmod(dest, 0o755)  # noqa: S103 - the sandbox uid must read the tree
    return manifest


# -- packing a folder (CLI) ----------------------------------------------------------------


def _folder_entries(
    root: Path, leave_out: frozenset[Path] = frozenset()
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry under ``root`` in sorted order (names compared as bytes), links not followed;
    none at or below a path of ``leave_out`` (absolute, resolved)."""

    def walk(folder: Path, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        with os.scandir(folder) as it:
            children = sorted(it, key=lambda e: os.fsencode(e.name))
        for entry in children:
            rel = f"{prefix}{entry.name}"
            if entry.is_dir(follow_symlinks=False) and entry.name in PACK_SKIP_DIRS:
                continue
            if Path(entry.path) in leave_out:
                continue
            yield rel, entry
            if entry.is_dir(follow_symlinks=False):
                yield from walk(Path(entry.path), rel + "/")

    yield from walk(root, "")


# What an over-quota refusal looks at: at most this many entries, this many named.
FILL_SCAN_ENTRIES = 200_000
FILL_NAMED = 3


def _what_fills(folder: Path, leave_out: frozenset[Path], measure: str) -> str:
    """'; the largest: data/scan.nii (412.0 MiB), ...' (``measure`` 'bytes': files by size;
    'entries': top-level folders by the entries below them), then what to do.

    Why: 'holds more than 50 MiB, the project's quota' named neither what filled it nor a
    way out, and a newcomer's code folder is full because it holds their data or outputs,
    which the job reads at /data and writes to /output (newcomer round 22). Stats only,
    bounded in entries and depth (the pack stopped at the quota; the rest is not read)."""
    sizes: dict[str, int] = {}
    for seen, (rel, entry) in enumerate(_folder_entries(folder, leave_out)):
        if seen >= FILL_SCAN_ENTRIES or rel.count("/") >= MAX_DEPTH:
            break
        if measure == "entries":
            top = rel.split("/", 1)[0]
            sizes[top] = sizes.get(top, 0) + 1
        elif entry.is_file(follow_symlinks=False):
            sizes[rel] = entry.stat(follow_symlinks=False).st_size
    ranked = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:FILL_NAMED]
    # Only what matters beside the largest: 'run.sh (0.0 MiB)' named nothing to remove.
    largest = [(name, size) for name, size in ranked if size * 10 >= ranked[0][1]] if ranked else []
    if measure == "entries":
        named = ", ".join(f"{name} ({n} {'entry' if n == 1 else 'entries'})" for name, n in largest)
    else:
        named = ", ".join(f"{name} ({size / MIB:.1f} MiB)" for name, size in largest)
    return (
        f"; the largest: {named}. Leave data and results out of it (the job reads its datasets "
        "at /data and writes to /output), or ask an admin to raise the quota (tre project set-quota)"
    )


VENV_MARKERS = ("pyvenv.cfg", "conda-meta")


def virtual_environments(folder: Path) -> list[Path]:
    """The Python virtual environments (a folder holding ``pyvenv.cfg``, or a conda
    environment's ``conda-meta``) under ``folder``, outermost only, links not followed.

    Why: a researcher's project folder often holds its ``.venv``; its interpreter links are
    absolute paths to the laptop's Python, so every push was refused (``symbolic link
    '.venv/bin/python3' points to an absolute path``), and its packages were built for the
    laptop, not the job's image. `tre submit` (packing the code folder) leaves them out and says so
    (review round 12); the job's packages belong in its image."""
    found: list[Path] = []
    # A stack, not recursion, and no deeper than a code path may be: a folder nested past
    # Python's recursion limit ended `tre submit --code DIR` in RecursionError, before the packer
    # could refuse it with its reason (redteam round 14).
    pending: list[tuple[Path, int]] = [(folder, 0)]
    while pending:
        path, depth = pending.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: os.fsencode(e.name))
        except OSError:
            continue
        names = {e.name for e in entries}
        if path != folder and any(marker in names for marker in VENV_MARKERS):
            found.append(path)
            continue
        if depth >= MAX_DEPTH:
            continue
        pending += [
            (Path(entry.path), depth + 1)
            for entry in reversed(entries)
            if entry.is_dir(follow_symlinks=False) and entry.name not in PACK_SKIP_DIRS
        ]
    return found


def _add_unchanged(tar: tarfile.TarFile, info: tarfile.TarInfo, path: str, seen: os.stat_result) -> None:
    """Add the regular file that was looked at as ``seen``, or refuse: a folder that changes
    while it is packed (a sync tool, a build, someone else's process) is packed as it was
    checked or not at all.

    Why: the file was opened by name after its ``lstat``, so a file replaced meanwhile by a
    symbolic link was packed as the link's target (a file outside the folder, under the
    name of one inside: ``~/.tre/credentials.json``, which the packer leaves out, as
    ``notes.txt``), by a FIFO hung ``tre submit`` in ``open``, and one cut shorter ended it
    in ``system error: unexpected end of data`` (redteam round 19). Now it is opened without
    following a link or blocking, must be the same file (device, inode) and still have the
    size and modification time it had when it was looked at, before and after its bytes are
    read."""
    changed = CodeRefused(
        f"the file {info.name!r} changed while the code folder was packed: run the command "
        "again once nothing is writing to the folder"
    )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise changed from exc
    with os.fdopen(fd, "rb") as fh:
        before = os.fstat(fd)
        same = (before.st_dev, before.st_ino) == (seen.st_dev, seen.st_ino)
        if not same or not stat.S_ISREG(before.st_mode) or _stamp(before) != _stamp(seen):
            raise changed
        try:
            tar.addfile(info, fh)
        except OSError as exc:
            if exc.errno is not None:  # reading or writing failed (a full disk), not a cut
                raise
            raise changed from exc  # tarfile's 'unexpected end of data': it was cut meanwhile
        if _stamp(os.fstat(fd)) != _stamp(seen):
            raise changed


def _stamp(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


def pack_folder(
    folder: Path, out: BinaryIO, limits: CodeLimits, leave_out: Iterable[Path] = ()
) -> CodeManifest:
    """Write ``folder`` as a deterministic tar.gz to ``out`` and return what it holds.

    Deterministic: entries sorted, no owners, modes 0644/0755, mtimes zero, gzip header
    without name or time, so the same tree always gives the same SHA-256. Special files
    are refused here with the server's reasons; version-control folders and bytecode caches
    (`PACK_SKIP_DIRS`) are left out, and so is every path of ``leave_out`` inside the folder
    (the CLI's own state: its saved login must never travel with the code). The result is
    checked with `inspect_archive`.
    """
    if not folder.is_dir():
        raise CodeRefused(f"{folder} is not a folder")
    skipped = frozenset(p.resolve() for p in leave_out)
    folder = folder.resolve()
    count = 0
    total = 0
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel, entry in _folder_entries(folder, skipped):
                _check_name(rel, "file")
                st = entry.stat(follow_symlinks=False)
                info = tarfile.TarInfo(rel)
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                count += 1
                if count > limits.max_entries:
                    raise CodeTooLarge(
                        f"the code folder {folder} has more than {limits.max_entries} entries "
                        "(files, folders and links), the project's quota"
                        + _what_fills(folder, skipped, "entries")
                    )
                if stat.S_ISLNK(st.st_mode):
                    info.type = tarfile.SYMTYPE
                    info.linkname = os.readlink(entry.path)
                    info.mode = 0o777
                    tar.addfile(info)
                elif stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                elif stat.S_ISREG(st.st_mode):
                    total += st.st_size
                    if total > limits.max_bytes:
                        raise CodeTooLarge(
                            f"the code folder {folder} holds more than {limits.describe_bytes()}, "
                            f"the project's quota{_what_fills(folder, skipped, 'bytes')}"
                        )
                    info.mode = 0o644
                    info.size = st.st_size
                    _add_unchanged(tar, info, entry.path, st)
                else:
                    kind = (
                        "device node"
                        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                        else "FIFO"
                        if stat.S_ISFIFO(st.st_mode)
                        else "socket"
                    )
                    raise CodeRefused(f"entry {rel!r} is a {kind}")
    out.seek(0)
    manifest = inspect_archive(out, limits)
    out.seek(0)
    return manifest
