"""skopeo and umoci, run as subprocesses with a bounded time and one-line errors.

They are Debian packages (scripts/install-system-deps); we use them for what they are good
at (format conversion, registry protocol, unpacking with whiteouts) and verify their
results ourselves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tre.errors import STORAGE_FULL_DETAIL, StorageFull, message_says_storage_full
from tre.images.errors import ImageRejected, ImageToolError
from tre.images.reference import printable

_PATH = re.compile(r"/[^\s:\"']+")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ImageToolError(f"{name} is not installed (scripts/install-system-deps installs it)")
    return found


def run_tool(
    args: list[str], timeout_s: float = 1800, rejects: bool = False, options: tuple[str, ...] = ()
) -> bytes:
    """Run a tool and return its stdout; its failure is the input's fault when ``rejects``
    (e.g. skopeo reading an upload), otherwise ours. Only the last line of its stderr is
    kept, screened. ``options``: the tool's global options, before its command (``args[1]``,
    which the messages name)."""
    try:
        proc = subprocess.run(
            [tool(args[0]), *options, *args[1:]],
            capture_output=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageToolError(f"{args[0]} {args[1]} did not finish within {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        # Before the cut to 300 characters: skopeo's untarring into its temporary folder names
        # two long paths before "no space left on device".
        full = message_says_storage_full(last)
        # Go tools log as `time=... level=fatal msg="..."`: keep the message.
        last = printable(last.split(' msg="', 1)[-1].rstrip('"') if ' msg="' in last else last, 300)
        if full:
            # The control plane's disk, not the input: never "not a usable image".
            raise StorageFull(STORAGE_FULL_DETAIL)
        if rejects:
            # The caller sees this: no paths of the control plane's scratch space.
            last = _PATH.sub("<file>", last)
            raise ImageRejected(f"not a usable image: {args[0]} could not read it ({last})")
        raise ImageToolError(f"{args[0]} {args[1]} failed: {last}")
    return proc.stdout


def skopeo_to_layout(source: str, layout: Path) -> None:
    """Normalise an archive into an OCI layout folder (tag ``image``). Compressed layers are
    kept as they are, so an OCI image of gzip layers keeps its manifest digest; uncompressed
    ones (docker save) are gzipped (skopeo 1.9 mislabels them when asked to keep them).

    skopeo unpacks an OCI archive into a temporary folder of its own (``/var/tmp`` by
    default), which a crashed or killed import leaves behind for ever, and where red team
    round 19's chained links wrote: ``--tmpdir`` keeps it in the import's scratch folder,
    swept with it (`ImageStore.scratch`)."""
    tmp = layout.parent / "skopeo-tmp"
    tmp.mkdir(mode=0o700, exist_ok=True)
    copy = ["skopeo", "copy", "--quiet", source, f"oci:{layout}:image"]
    run_tool(copy, rejects=True, options=("--tmpdir", str(tmp)))


def umoci_unpack(layout: Path, bundle: Path) -> None:
    """--rootless: no chown, no device nodes, no security.* xattrs, even when we run as root.

    A failure here is the image's doing (we verified the layout, but an entry the kernel
    will not create, such as a path too long under the bundle, is only found by trying):
    refused with the tool's last line, the control plane's paths removed."""
    run_tool(["umoci", "unpack", "--rootless", "--image", f"{layout}:image", str(bundle)], rejects=True)
