"""Ordinary logs the screen withheld as encoded data (round 17, found with the identifiers of
every pydicom test file).

Four classes of false alarm: a row of numbers counting in steps was read as a hex dump (its
two-digit numbers are hex groups); content hashes that tools print one a line (pip's wheel
cache and ``sha256=``, git commit ids, docker layer ids and digests, ``sha256sum``) added up
as a payload over their neighbours, and pip's wheel file names read as an 85-symbol token;
quoted CamelCase class names read as ascii85 (the quotes were its "punctuation"); and
CamelCase words of twelve letters or more (``RuntimeError``, ``ModuleNotFoundError``) counted
as base64 tokens, so twenty tracebacks added up to a payload. Each corpus below was withheld
in part before. The planted leaks next to each relaxed rule are still withheld.
"""

from __future__ import annotations

import base64
import hashlib
import random
import warnings
from functools import cache
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.data import get_charset_files, get_testdata_file

from egress_review.checks.identifiers import MALFORMED_DICOM, identifiers_from_dataset
from egress_review.logscreen import LogScreen
from tre.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
ENCODED = ("encoded run", "encoded-looking")


def _shipped_test_files() -> list[Path]:
    """The test files in pydicom's own folder, as `get_testdata_files("*")` lists them where
    nothing can be downloaded: that call also fetches ~90 more from pydicom-data on GitHub,
    which took 16 s of wall time to fail on a machine without the internet (each of three test
    modules paid it) and would change the identifiers where it succeeds."""
    folder = Path(pydicom.data.__file__).parent / "test_files"
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix != ".py")


@cache
def _every_test_file_identifier() -> frozenset[str]:
    """The identifiers of every DICOM file pydicom ships for its tests (~290)."""
    found: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in [*_shipped_test_files(), *get_charset_files("*")]:
            try:
                found |= identifiers_from_dataset(pydicom.dcmread(path, stop_before_pixels=True, force=True))
            except MALFORMED_DICOM:
                continue
    return frozenset(found)


@cache
def _screen(which: str) -> LogScreen:
    if which == "every test file":
        identifiers = set(_every_test_file_identifier())
    else:
        identifiers = identifiers_from_dataset(pydicom.dcmread(get_testdata_file("CT_small.dcm")))
    return LogScreen.for_policies([load_policy("default", REPO / "policies")], identifiers)


def _digest(text: str, algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, text.encode()).hexdigest()


def _pip_install() -> list[str]:
    lines = ["Processing /code/vendor", "Building wheels for collected packages: " + ", ".join(PACKAGES)]
    for name in PACKAGES:
        wheel = f"{name}-1.{len(name)}.0-py3-none-any.whl"
        cache = _digest(name, "sha224")  # pip's cache: <2>/<2>/<2>/<the other 50> hex digits
        fan = (cache[:2], cache[2:4], cache[4:6])
        lines += [
            f"  Building wheel for {name} (pyproject.toml) ... done",
            f"  Created wheel for {name}: filename={wheel} size={1000 + len(name) * 37} "
            f"sha256={_digest(wheel)}",
            f"  Stored in directory: /root/.cache/pip/wheels/{'/'.join(fan)}/{cache[6:]}",
        ]
    return [*lines, f"Successfully built {' '.join(PACKAGES)}"]


PACKAGES = ["radiomics-utils", "dicom2nifti", "lungmask", "totalsegmentator", "nnunetv2", "tre-helpers"]


def _git_log() -> list[str]:
    lines = []
    for i in range(8):
        lines += [
            f"commit {_digest(f'c{i}', 'sha1')}",
            f"Author: Researcher {i} <r{i}@example.org>",
            f"Date:   Mon Nov {i + 2} 10:0{i}:00 2026 +0100",
            "",
            f"    tune the loader ({i})",
            "",
        ]
    return [*lines, f"HEAD is now at {_digest('c0', 'sha1')[:7]} tune the loader (0)"]


def _docker_pull() -> list[str]:
    layers = [_digest(f"layer{i}")[:12] for i in range(9)]
    lines = ["latest: Pulling from research/monai"]
    for state in ("Pulling fs layer", "Verifying Checksum", "Download complete", "Pull complete"):
        lines += [f"{layer}: {state}" for layer in layers]
    return [
        *lines,
        f"Digest: sha256:{_digest('image')}",
        "Status: Downloaded newer image for research/monai:latest",
        f"Successfully built {_digest('built')[:12]}",
    ]


def _sha256sum() -> list[str]:
    return [f"{_digest(f'series {i}')}  series-{i:05d}.nii.gz" for i in range(12)] + ["all checksums match"]


def _tracebacks() -> list[str]:
    lines = []
    for i in range(20):
        lines += [
            "Traceback (most recent call last):",
            f'  File "/code/train.py", line {40 + i}, in <module>',
            "    main()",
            '  File "/usr/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1518, in _call_impl',
            "    return forward_call(*args, **kwargs)",
            "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB",
            "During handling of the above exception, another exception occurred:",
            "ModuleNotFoundError: No module named 'monai'" if i % 2 else "KeyboardInterrupt",
            f"FileNotFoundError: [Errno 2] No such file or directory: '/output/run{i}'",
            f"retrying batch {i}",
        ]
    return lines


BENIGN = {
    "rows of numbers counting in steps": [
        "epochs: " + " ".join(str(i * 3) for i in range(20)),
        " ".join(str(i * 5) for i in range(16)),
        "steps " + " ".join(str(i * 100) for i in range(12)),
        "[" + ", ".join(str(i * 4) for i in range(30)) + "]",
        "channels 16 32 64 128 256 512 1024 2048 4096",
        "epoch    10    20    30    40    50    60    70    80    90   100",
        "counts 0 0 0 0 0 0 0 0 0 0 0 0",
        "seeds 11 22 33 44 55 66 77 88 99 110 121",
        "thresholds " + " ".join(f"{t / 20:.2f}" for t in range(1, 20)),
        "lr " + " ".join(f"{10.0 * i:.1f}" for i in range(1, 12)),
        "scales [1.5, 3.0, 4.5, 6.0, 7.5, 9.0, 10.5, 12.0, 13.5]",
    ],
    "pip building wheels": _pip_install() * 2,
    "git log": _git_log(),
    "docker pull": _docker_pull(),
    "sha256sum of the outputs": _sha256sum(),
    "quoted CamelCase names": [
        f"{prefix} '{name}'{suffix}"
        for prefix, suffix in (("loaded", ""), ("KeyError:", ""), ("<class", ">"), ("using", ","))
        for name in (
            "ResNet50EncoderDecoderBlock",
            "ResNet3DBlockV2",
            "UNet3DWithAttentionGates",
            "SwinTransformerV2Block",
            "DenseNet121Classifier",
            "DynUNetDecoderHead",
            "BasicUNetPlusPlus",
        )
    ],
    "twenty tracebacks": _tracebacks(),
}


def _judged(screen: LogScreen, lines: list[str], final: bool = True) -> list[tuple[str, str]]:
    screening = screen.screen_log(("\n".join(lines) + "\n").encode(), final=final)
    return [(line, shown.text) for line, shown in zip(lines, screening.lines, strict=False) if shown.withheld]


@pytest.mark.parametrize("kind", sorted(BENIGN))
def test_an_ordinary_log_is_not_withheld_as_encoded_data(kind: str) -> None:
    lines = BENIGN[kind]
    withheld = _judged(_screen("every test file"), lines)
    assert [w for w in withheld if any(word in w[1] for word in ENCODED)] == [], withheld
    # With one series' identifiers nothing at all is withheld, ended or running.
    screen = _screen("CT_small")
    assert _judged(screen, lines) == []
    live = screen.screen_log(("\n".join(lines) + "\n").encode(), final=False)
    assert [line.text for line in live.lines] == lines[: len(live.lines)]
    # (the last few may wait: they could end with an identifier's start, `SqueezedIndex`)
    assert len(live.lines) >= len(lines) - 4


def _withheld(lines: list[str]) -> int:
    return len(_judged(_screen("CT_small"), lines))


BLOB = random.Random(17).randbytes(4096)


def test_hex_cut_into_lines_is_still_withheld() -> None:
    text = BLOB.hex()
    bare = [text[i : i + 64] for i in range(0, 1024, 64)]
    assert _withheld(bare) == len(bare)
    two_a_line = [f"hash {text[i : i + 40]} {text[i + 40 : i + 80]}" for i in range(0, 1600, 80)]
    assert _withheld(two_a_line) == len(two_a_line)
    a_long_one = [f"sha512 {hashlib.sha512(BLOB).hexdigest()}"]
    assert _withheld(a_long_one) == 1


def test_a_hex_dump_of_digits_only_is_still_withheld() -> None:
    # Bytes whose hex happens to be decimal digits, and decimal bytes: no steps, still groups.
    digits = [b for b in BLOB if f"{b:02x}".isdecimal()]
    lines = [" ".join(f"{b:02x}" for b in digits[i : i + 16]) for i in range(0, 320, 16)]
    assert _withheld(lines) == len(lines)


def test_base64_and_ascii85_still_withheld_in_names_and_quotes() -> None:
    b64 = base64.b64encode(BLOB).decode()
    assert _withheld([f"saved /output/{b64[:120]}"]) == 1
    a85 = base64.a85encode(BLOB).decode()
    quoted = [f"'{a85[i : i + 40]}'" for i in range(0, 1600, 40)]
    assert _withheld(quoted) >= 0.95 * len(quoted)
    # A pip-like path whose directories are the payload is judged on its directories.
    dirs = "/".join(BLOB.hex()[i : i + 2] for i in range(0, 80, 2))
    assert _withheld([f"Stored in directory: /wheels/{dirs}/{_digest('x')}"]) == 1
