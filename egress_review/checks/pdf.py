"""PDF outputs (leaks13): the text layer, metadata and images go through the same checks as
text and pictures; what cannot be read is refused.

A PDF a policy allows used to be flagged "uninspected": the reviewers had to read a 40-page
report for a patient's name or a small count themselves. Now `pypdf` (pure Python) reads it:

* **Text layer.** Every page's text, joined, is checked as a text file (identifiers, dates,
  small counts in prose and in aligned tables, encoded runs), and the metadata fields
  (author, title, subject, keywords, producer) for identifiers.
* **Images.** Each image embedded in a page goes through the raster checks (metadata, OCR for
  burned-in identifiers and drawn counts, bars): a table pasted as a picture, a scan.
* **Refused** (block, fixed words): an encrypted PDF that does not open with the empty password
  (nothing can be checked), one `pypdf` cannot parse, one with attached files (a CSV carried
  inside, which the viewer may not show) or with JavaScript/actions (it can fetch or change
  what it shows).

Bounded: at most `MAX_PAGES` pages and `MAX_IMAGES` images are read, the text to the text
checks' own limit; a PDF past them is flagged so the reviewers read the rest.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from egress_review.checks.model import CheckContext, CheckResult
from tre.plural import count
from tre.policy import Policy

MAX_PAGES = 300
MAX_IMAGES = 40
MAX_IMAGE_BYTES = 32 * 1024 * 1024
_ACTIVE = re.compile(rb"/(?:JavaScript|JS|Launch|SubmitForm|ImportData|RichMedia)\b")

TextChecks = Callable[[Path, str], list[CheckResult]]
ImageChecks = Callable[[Path], list[CheckResult]]


def _refused(reason: str, **evidence: object) -> list[CheckResult]:
    return [CheckResult(check="pdf", outcome="block", reason=reason, evidence=dict(evidence))]


def check_pdf(
    path: Path, policy: Policy, context: CheckContext, text_checks: TextChecks, image_checks: ImageChecks
) -> list[CheckResult]:
    """All findings on one PDF; ``text_checks(file, kind)`` and ``image_checks(file)`` are the
    runner's checks for a text file and for a picture (passed in to avoid an import cycle)."""
    import pypdf
    from pypdf.errors import PdfReadError

    raw = path.read_bytes()
    try:
        reader = pypdf.PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            return _refused(
                "the PDF is encrypted with a password, so its content cannot be checked: "
                "release it unencrypted"
            )
        pages = list(reader.pages)
    except (
        PdfReadError,
        ValueError,
        KeyError,
        TypeError,
        OSError,
        RecursionError,
        NotImplementedError,
    ) as exc:
        return _refused("the PDF cannot be read, so its content cannot be checked", error=type(exc).__name__)
    out: list[CheckResult] = []
    try:
        attachments = reader.attachments
    except Exception:  # noqa: BLE001 - a broken name tree is refused like any unreadable part
        attachments = {"?": []}
    if attachments:
        out += _refused(
            f"the PDF carries {count(len(attachments), 'attached file')}, which a PDF viewer may not show "
            "and the checks do not release inside a PDF: release them as files of their own"
        )
    if _ACTIVE.search(raw) or _has_actions(reader, pages):
        out += _refused(
            "the PDF holds JavaScript or actions (launch, submit, import), which can change "
            "or fetch what it shows: release it without them"
        )
    if len(pages) > MAX_PAGES:
        out.append(
            CheckResult(
                check="pdf",
                outcome="flag",
                reason=f"only the first {MAX_PAGES} of the PDF's {len(pages)} pages were checked",
            )
        )
    texts: list[str] = []
    images: list[bytes] = []
    for page in pages[:MAX_PAGES]:
        try:
            texts.append(page.extract_text() or "")
        except Exception:  # noqa: BLE001 - a page whose text cannot be read is refused below
            return out + _refused("a page of the PDF cannot be read, so its text cannot be checked")
        if len(images) < MAX_IMAGES:
            try:
                for image in page.images:
                    if len(images) >= MAX_IMAGES:
                        break
                    data = image.data
                    if len(data) <= MAX_IMAGE_BYTES:
                        images.append(data)
            except Exception:  # noqa: BLE001 - an image pypdf cannot decode: the reviewers look
                out.append(
                    CheckResult(
                        check="pdf",
                        outcome="flag",
                        reason="an image in the PDF cannot be decoded for the image checks: look at it",
                    )
                )
    meta = _metadata(reader)
    with tempfile.TemporaryDirectory(prefix="tre-pdf-") as tmp:
        folder = Path(tmp)
        text = "\n".join(t for t in [*texts, *meta] if t)
        if text.strip():
            layer = folder / "text.txt"
            layer.write_text(text, encoding="utf-8")
            out += text_checks(layer, "text")
        for i, data in enumerate(images):
            picture = folder / f"image{i}"
            picture.write_bytes(data)
            out += image_checks(picture)
    if not any(t.strip() for t in texts) and not images:
        out.append(
            CheckResult(
                check="pdf",
                outcome="flag",
                reason="the PDF has no text layer and no image the checks can read (vector drawing "
                "or fonts without text): the reviewers must read it themselves",
            )
        )
    return out


_ACTION_TYPES = {"/JavaScript", "/Launch", "/SubmitForm", "/ImportData", "/RichMediaExecute"}


def _has_actions(reader: object, pages: Sequence[object]) -> bool:
    """Scripts or actions anywhere a viewer runs them: the catalog's /OpenAction, /AA and
    /Names /JavaScript, each page's /AA and its annotations' /A (object streams are
    compressed, so the raw bytes alone do not show them)."""

    def active(action: object, depth: int = 0) -> bool:
        try:
            action = action.get_object()  # type: ignore[attr-defined]
        except AttributeError:
            pass
        if depth > 8 or not isinstance(action, dict):
            return False
        if str(action.get("/S", "")) in _ACTION_TYPES or "/JS" in action:
            return True
        return any(
            active(v, depth + 1) for k, v in list(action.items())[:50] if k in ("/Next", "/A") or depth == 0
        )

    try:
        root = reader.trailer["/Root"].get_object()  # type: ignore[attr-defined]
        if active(root.get("/OpenAction")) or active(root.get("/AA")):
            return True
        names = root.get("/Names")
        if names is not None and "/JavaScript" in names.get_object():
            return True
        for page in pages[:MAX_PAGES]:
            if active(page.get("/AA")):  # type: ignore[attr-defined]
                return True
            for annot in list(page.get("/Annots") or [])[:200]:  # type: ignore[attr-defined]
                annot = annot.get_object()
                if active(annot.get("/A")) or active(annot.get("/AA")):
                    return True
    except Exception:  # noqa: BLE001 - a structure too broken to walk is refused as active
        return True
    return False


def _metadata(reader: object) -> list[str]:
    """The document information fields' values (author, title, ...), as text lines."""
    try:
        info = getattr(reader, "metadata", None) or {}
        return [str(v) for v in list(info.values())[:50] if isinstance(v, str) and v.strip()]
    except Exception:  # noqa: BLE001 - unreadable metadata adds nothing; the text is still read
        return []
