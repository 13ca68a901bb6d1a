"""The `tarfile` module with the extraction filters of PEP 706 (`data_filter`, `FilterError`,
``extractall(filter=...)``): the standard library's where it has them, else the
``backports.tarfile`` package's copy of the same module.

Why: the filters arrived in CPython 3.11.4, and Debian 12's python3 is 3.11.2, the
interpreter `scripts/install` builds ``.venv`` with on a fresh machine. Code archives
(`tre.code.archive`) and Kubernetes output streams (`tre.executors.kubernetes.tarstream`)
are unpacked with the ``data`` filter as a second line of defence after our own checks;
without it every upload of a researcher's code failed with an internal error there.
"""

from __future__ import annotations

import tarfile

if not hasattr(tarfile, "data_filter"):  # CPython before 3.11.4 (Debian 12's 3.11.2)
    from backports import tarfile  # type: ignore[no-redef]

__all__ = ["tarfile"]
