"""What `tre serve` and `tre worker` import before they answer: none of the libraries that only
one airlock check or one job needs.

Every start paid for them: onnx alone was ~1.1 s of a `tre serve` start's ~5 CPU-s (imported
through the model check at module level), scikit-learn/scipy ~2 s before round 15. They are
imported by the check that uses them (`egress_review.checks.model_release`,
`egress_review.checks.membership`) or by the job (`tre.kernels`)."""

from __future__ import annotations

import json
import subprocess
import sys

# Imported by `tre serve` (API, panel, worker, expiry sweeper) and `tre worker` at start.
START_MODULES = ("tre.cli.app", "tre.server", "tre.api.app", "egress_review.api", "egress_review.expiry")
# Libraries of one check or of the jobs: each costs 0.1-1.1 s to import.
NOT_AT_START = (
    "onnx",
    "onnxruntime",
    "sklearn",
    "scipy",
    "torch",
    "pytesseract",
    "pandas",
    "zarr",
    "numba",
    "nibabel",
    "imagecodecs",
    "kubernetes",
)


def test_a_server_start_imports_no_check_only_library() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {START_MODULES!r}: importlib.import_module(name)\n"
        f"print(json.dumps([m for m in {NOT_AT_START!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [], "imported at start: " + proc.stdout


# What every `tre` command imports before it runs (the app and its sub-commands): a
# researcher's command talks HTTP; numpy (~0.15 s) is for the job and the kernels' own checks,
# SQLAlchemy for the control plane's commands, which import it when they run.
NOT_IN_A_COMMAND = (*NOT_AT_START, "numpy", "sqlalchemy")


def test_a_cli_command_imports_neither_numpy_nor_the_store() -> None:
    code = (
        "import json, sys\n"
        "import tre.cli.app\n"
        f"print(json.dumps([m for m in {NOT_IN_A_COMMAND!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [], "imported by every command: " + proc.stdout


# The log screen's text modules, each imported first in its own process: `disguised` imported
# the checks package (for a type annotation), which imports `disguised` back before its names
# exist; it worked only when something had imported the checks package before.
SCREEN_MODULES = (
    "egress_review.disguised",
    "egress_review.split_parts",
    "egress_review.encoded",
    "egress_review.digit_chains",
    "egress_review.mixed_words",
)


def test_the_screens_text_modules_import_alone() -> None:
    for name in SCREEN_MODULES:
        proc = subprocess.run(
            [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, f"{name}: {proc.stderr[-600:]}"
