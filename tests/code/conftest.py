"""The core tests' small TRE (users alice/bob/dana/audrey/root, projects p1/p2, dataset ct1)."""

from tests.conftest import REPO
from tests.core.conftest import dicom_dir, world  # noqa: F401 - fixtures shared with tests/core

__all__ = ["REPO"]
