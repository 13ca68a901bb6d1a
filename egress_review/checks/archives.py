"""Archives a policy lets leave: every member is checked as a file of its own.

A policy may allow ``zip``/``tar``/``gzip``... with ``files.archives: allow`` or ``flag``; the
archive must then not pass on its container's word. Members are read in a streaming way with
bounds on their number, their inflated bytes (`files.max_uncompressed_bytes` in all), their
size (`files.max_file_bytes`) and the nesting (an archive in an archive counts one level, at
most `MAX_DEPTH`); whatever cannot be read to the end under those bounds blocks: an encrypted
or unknown-method member, a ZIP whose local headers disagree with its central directory, a
format Python cannot read (7z, RAR, zstd), a bomb. Member names are the job's text: results
name a member by its position, the name itself is reviewer-only evidence.
"""

from __future__ import annotations

import bz2
import dataclasses
import lzma
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from egress_review.checks.detect import Detected
from egress_review.checks.model import CheckContext, CheckResult
from tre import plural
from tre.policy import Policy

MAX_MEMBERS = 1000
MAX_DEPTH = 3
CHUNK = 1 << 20

RunChecks = Callable[[Path, str, Policy, CheckContext], list[CheckResult]]


class Unreadable(Exception):
    """The archive cannot be read completely under the bounds; ``reason`` is fixed words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _copy(src: IO[bytes], dst: Path, budget: list[int], max_file: int) -> None:
    """Stream one member to ``dst``; stop at the member or whole-archive bound."""
    written = 0
    with dst.open("wb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            budget[0] -= len(chunk)
            if written > max_file:
                raise Unreadable("a member is larger than the policy's largest file")
            if budget[0] < 0:
                raise Unreadable("the members inflate past the policy's bound (a decompression bomb)")
            out.write(chunk)


def _zip_members(path: Path, tmp: Path, budget: list[int], max_file: int) -> Iterator[tuple[str, Path]]:
    with zipfile.ZipFile(path) as zf, path.open("rb") as raw:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise Unreadable(f"the archive has more than {MAX_MEMBERS} members")
        for i, info in enumerate(infos):
            if info.flag_bits & 0x1:
                raise Unreadable("a member is encrypted")
            if info.compress_type not in (
                zipfile.ZIP_STORED,
                zipfile.ZIP_DEFLATED,
                zipfile.ZIP_BZIP2,
                zipfile.ZIP_LZMA,
            ):
                raise Unreadable("a member uses a compression method that cannot be read")
            raw.seek(info.header_offset)
            local = raw.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise Unreadable("the central directory points at no local header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            local_name = raw.read(name_len)
            if local_name != info.orig_filename.encode(
                "cp437" if not info.flag_bits & 0x800 else "utf-8", "replace"
            ):
                raise Unreadable("a member's local header names another file than the central directory")
            if info.is_dir():
                continue
            dst = tmp / f"member-{i}"
            with zf.open(info) as src:
                _copy(src, dst, budget, max_file)
            yield info.filename, dst


def _tar_members(path: Path, tmp: Path, budget: list[int], max_file: int) -> Iterator[tuple[str, Path]]:
    with tarfile.open(path, mode="r:*") as tf:
        for i, member in enumerate(tf):
            if i >= MAX_MEMBERS:
                raise Unreadable(f"the archive has more than {MAX_MEMBERS} members")
            if not member.isfile():
                continue  # links, folders, devices carry no content of their own
            src = tf.extractfile(member)
            if src is None:
                continue
            dst = tmp / f"member-{i}"
            _copy(src, dst, budget, max_file)
            yield member.name, dst


def _stream_member(
    path: Path, kind: str, tmp: Path, budget: list[int], max_file: int
) -> Iterator[tuple[str, Path]]:
    """A gzip/bzip2/xz file is one compressed member (a .tar.gz is read as a tar above)."""
    opener: Callable[[Path], IO[bytes]] = {
        "gzip": lambda p: __import__("gzip").open(p, "rb"),
        "bzip2": lambda p: bz2.open(p, "rb"),
        "xz": lambda p: lzma.open(p, "rb"),
    }[kind]
    dst = tmp / "member-0"
    with opener(path) as src:
        _copy(src, dst, budget, max_file)
    name = path.name.rsplit(".", 1)[0] if "." in path.name else path.name
    yield name, dst


def _members(path: Path, detected: Detected, tmp: Path, policy: Policy) -> Iterator[tuple[str, Path]]:
    budget = [policy.files.max_uncompressed_bytes]
    max_file = policy.files.max_file_bytes
    if detected.type == "zip":
        yield from _zip_members(path, tmp, budget, max_file)
    elif detected.type == "tar" or (detected.type in ("gzip", "bzip2", "xz") and tarfile.is_tarfile(path)):
        yield from _tar_members(path, tmp, budget, max_file)
    elif detected.type in ("gzip", "bzip2", "xz"):
        yield from _stream_member(path, detected.type, tmp, budget, max_file)
    else:
        raise Unreadable(
            f"{detected.detail} archives cannot be opened here, so their members cannot be checked"
        )


def check_archive(
    path: Path, detected: Detected, policy: Policy, context: CheckContext, run_checks: RunChecks
) -> list[CheckResult]:
    """Each member's findings (as ``member:<check>``), or one block if the archive cannot be read
    completely under the bounds. Called only for archive types the policy allows."""
    if context.depth >= MAX_DEPTH:
        return [_refused("archives are nested deeper than the checks follow")]
    nested = dataclasses.replace(context, depth=context.depth + 1)
    out: list[CheckResult] = []
    count = 0
    with tempfile.TemporaryDirectory(prefix="tre-archive-") as tmp:
        try:
            for i, (name, member) in enumerate(_members(path, detected, Path(tmp), policy)):
                count += 1
                for r in run_checks(member, name, policy, nested):
                    if r.outcome == "pass" or r.check == "limits":
                        continue
                    out.append(
                        r.model_copy(
                            update={
                                "check": f"member:{r.check}",
                                "reason": f"archive member #{i + 1}: {r.reason}",
                                "evidence": {
                                    **r.evidence,
                                    "member": i + 1,
                                    "reviewer_only": {
                                        **r.evidence.get("reviewer_only", {}),
                                        "member_name": name[:300],
                                    },
                                },
                            }
                        )
                    )
                member.unlink(missing_ok=True)
        except Unreadable as exc:
            return [*out, _refused(exc.reason)]
        except (
            zipfile.BadZipFile,
            tarfile.TarError,
            OSError,
            EOFError,
            zlib.error,
            lzma.LZMAError,
            ValueError,
        ):
            return [*out, _refused("the archive is damaged or not what it claims to be")]
    out.append(
        CheckResult(
            check="archive_members",
            outcome="pass",
            reason=f"{plural.count(count, 'member')} read and checked as files of their own",
            evidence={"members": count},
        )
    )
    return out


def _refused(reason: str) -> CheckResult:
    return CheckResult(
        check="archive_members", outcome="block", reason=f"{reason}: the archive cannot be reviewed"
    )
