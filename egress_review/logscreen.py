"""Screening a job's log before a researcher sees it.

A job can print whatever it read, so its log is an output channel like any file in /output,
only live. Researchers therefore see it through the same knowledge the airlock has: lines
that name an identifier from the dataset's DICOM headers, lines holding a long base64/hex run
(a file smuggled as text) and overlong lines are replaced by a ``[tre] withheld`` notice, and
only the first part of the log is shown at all. Staff (admin, auditor) read the raw log.

This narrows the channel; it does not close it (a job can still print small facts one line
at a time). `status_only` in the dataset's policy closes it at the price of no live log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from egress_review import checking
from egress_review.checks.identifiers import IdentifierMatcher
from tre.config import Settings
from tre.errors import PolicyUnavailable
from tre.policy import Policy, policies_for_datasets
from tre.store.models import Job

_ORDER = {"full": 0, "screened": 1, "status_only": 2}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class LogScreen:
    matcher: IdentifierMatcher
    visibility: str
    limit_bytes: int
    max_line_chars: int
    encoded_min_chars: int

    @classmethod
    def for_policies(cls, policies: Iterable[Policy], identifiers: set[str]) -> LogScreen:
        """The strictest setting of every field over the job's datasets' policies."""
        pols = list(policies)
        if not pols:
            raise ValueError("a log screen needs at least one policy")
        jobs = [p.job for p in pols]
        return cls(
            matcher=IdentifierMatcher(identifiers, pols[0].text),
            visibility=max((j.log_visibility for j in jobs), key=_ORDER.__getitem__),
            limit_bytes=min(j.researcher_log_limit_kib for j in jobs) * 1024,
            max_line_chars=min(j.log_max_line_chars for j in jobs),
            encoded_min_chars=min(j.log_encoded_min_chars for j in jobs),
        )

    @property
    def _encoded(self) -> re.Pattern[str]:
        return re.compile(r"[A-Za-z0-9+/]{" + str(self.encoded_min_chars) + r",}")

    def screen(self, raw: bytes, start: int, final: bool) -> tuple[bytes, int]:
        """Screen ``raw`` (read from byte ``start`` of the log); return what to show and the
        offset to read from next. Until the job has ended only whole lines are released, so a
        line is never judged in pieces."""
        if self.visibility == "full":
            return raw, start + len(raw)
        if self.visibility == "status_only":
            notice = (
                b""
                if start or not raw
                else (
                    b"[tre] this dataset's policy withholds job logs from researchers; "
                    b"the job's state and reason are shown instead\n"
                )
            )
            return notice, start + len(raw)
        if start >= self.limit_bytes:
            return b"", start + len(raw)
        usable = raw if final else raw[: raw.rfind(b"\n") + 1]
        if not usable and len(raw) > self.max_line_chars * 4:
            # No line end in sight and already overlong (or a 1 MiB chunk): judge it now, so a
            # follower never waits on it for ever.
            usable = raw
        notice = b""
        room = self.limit_bytes - start
        if len(usable) > room:
            cut = usable.rfind(b"\n", 0, room) + 1
            usable = usable[:cut]
            notice = (
                f"[tre] the rest of this log is withheld from researchers (limit "
                f"{self.limit_bytes // 1024} KiB); admins and auditors can read it in full\n"
            ).encode()
            # Everything read so far is accounted for: following the log then shows nothing more.
            return self._lines(usable) + notice, max(start + len(raw), self.limit_bytes)
        return self._lines(usable), start + len(usable)

    def _lines(self, data: bytes) -> bytes:
        if not data:
            return b""
        text = data.decode("utf-8", "replace")
        lines = text.split("\n")
        named = {hit.line for hit in self.matcher.find(text, limit=10_000)} if self.matcher else set()
        encoded = self._encoded
        out: list[str] = []
        for number, line in enumerate(lines, start=1):
            if number == len(lines) and line == "":
                break
            if len(line) > self.max_line_chars:
                out.append(
                    f"[tre] withheld a line of {len(line)} characters (longer than {self.max_line_chars})"
                )
            elif (run := encoded.search(line)) is not None:
                out.append(f"[tre] withheld a line holding an encoded run of {len(run.group(0))}+ characters")
            elif number in named:
                out.append("[tre] withheld a line naming an identifier from the dataset")
            else:
                out.append(_CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", line))
        return ("\n".join(out) + ("\n" if text.endswith("\n") else "")).encode()


def screen_job_log(
    session: Session, settings: Settings, job: Job, raw: bytes, offset: int, final: bool
) -> tuple[bytes, int]:
    """The one entry point for showing a job's log to a researcher (`tre.jobs.service.LogScreener`).

    The strictest setting over the policies of every dataset the job read applies; no policy,
    no log (fail closed with the reason).
    """
    datasets = checking.job_datasets(session, job)
    try:
        applied = policies_for_datasets(datasets, settings.resolved_policies_dir)
    except PolicyUnavailable as exc:
        raise PolicyUnavailable(f"the job's log is withheld: {exc}") from exc
    screen = LogScreen.for_policies([a.policy for a in applied], checking.identifiers_for(datasets))
    return screen.screen(raw, offset, final)
