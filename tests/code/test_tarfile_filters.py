"""Code archives unpack on a Python whose `tarfile` has no extraction filters (PEP 706).

Debian 12's python3 is 3.11.2 and the filters came with 3.11.4: a newcomer following the
README with `sudo` (whose PATH has only the system Python) got `.venv` on 3.11.2, and the
demo's first code upload failed with an internal error. `tre.safetar` takes the filters from
``backports.tarfile`` there; this runs the unpacking in a subprocess where the standard
module's filters are removed before tre is imported, as on that interpreter.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.code.hostile import file, folder, targz

REPO = Path(__file__).resolve().parents[2]

WITHOUT_FILTERS = """
import sys, tarfile
from pathlib import Path
for name in ("data_filter", "tar_filter", "fully_trusted_filter", "FilterError"):
    if hasattr(tarfile, name):  # already absent on such a Python itself
        delattr(tarfile, name)
from tre.safetar import tarfile as chosen
from tre.code.archive import CodeLimits, unpack
manifest = unpack(Path(sys.argv[1]), Path(sys.argv[2]), CodeLimits(max_bytes=1 << 20, max_entries=100))
print(chosen.__name__, manifest.entry_count)
"""


def test_code_unpacks_where_the_standard_tarfile_has_no_filters(tmp_path: Path) -> None:
    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(targz(folder("lib"), file("lib/util.py", mode=0o777), file("analysis.py")))
    dest = tmp_path / "tree"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_FILTERS, str(archive), str(dest)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["backports.tarfile", "3"]
    assert (dest / "analysis.py").read_text() == "print('hi')\n"
    assert (dest / "lib" / "util.py").stat().st_mode & 0o777 == 0o644


def test_extraction_filters_come_only_from_tre_safetar() -> None:
    """Every module that extracts with a filter takes `tarfile` from `tre.safetar`, so no new
    code depends on a standard library newer than Debian 12's."""
    filters = {"data_filter", "tar_filter", "fully_trusted_filter", "FilterError"}
    offenders = []
    for path in [*REPO.joinpath("tre").rglob("*.py"), *REPO.joinpath("egress_review").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        uses = any(isinstance(n, ast.Attribute) and n.attr in filters for n in ast.walk(tree)) or any(
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("extract", "extractall")
            and any(k.arg == "filter" for k in n.keywords)
            for n in ast.walk(tree)
        )
        plain = any(
            isinstance(n, ast.Import) and any(a.name == "tarfile" for a in n.names) for n in ast.walk(tree)
        )
        if uses and plain and path.name != "safetar.py":
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders
