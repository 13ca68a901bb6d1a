"""The CPU job image recipe and build. The full build downloads Debian packages and takes
minutes, so it runs when TRE_TEST_JOB_IMAGE_BUILD=1 (and in benchmarks/job_image.py); the
recipe, cache key and tre layer are tested always."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.kernels.test_sandbox_cohort import PROBE
from tre.config import Settings
from tre.images import jobimage


def test_recipe_hash_follows_the_kernels(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = jobimage.recipe_hash(settings)
    assert jobimage.recipe_hash(settings) == first
    files = jobimage.tre_files()
    assert any(p.name == "job.py" and p.parent.name == "kernels" for p in files)
    real_root = jobimage.TRE_ROOT
    copy = tmp_path / "tre"
    (copy / "kernels").mkdir(parents=True)
    for p in files:
        target = copy / p.relative_to(real_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(p.read_bytes())
    monkeypatch.setattr(jobimage, "TRE_ROOT", copy)
    assert jobimage.recipe_hash(settings) == first  # same bytes, same key
    (copy / "kernels" / "cpu.py").write_text((copy / "kernels" / "cpu.py").read_text() + "\n# changed\n")
    assert jobimage.recipe_hash(settings) != first


def test_tre_layer_holds_the_kernels_and_demo_job(tmp_path: Path) -> None:
    layer = tmp_path / "tre.tar"
    jobimage._write_tre_layer(layer)
    with tarfile.open(layer) as tar:
        names = set(tar.getnames())
        assert all(m.uid == 0 and not m.mode & 0o022 for m in tar.getmembers())
    assert {"opt/tre/python/tre/__init__.py", "opt/tre/python/tre/demo_job.py",
            "opt/tre/python/tre/kernels/job.py"} <= names  # fmt: skip
    assert not any("/api/" in n or n.endswith("config.py") for n in names)


@pytest.mark.skipif(
    os.environ.get("TRE_TEST_JOB_IMAGE_BUILD") != "1",
    reason="set TRE_TEST_JOB_IMAGE_BUILD=1 (minutes, downloads Debian packages)",
)
def test_build_import_and_smoke(settings: Settings, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tre.images.store import ImageStore

    cold = jobimage.build_cpu_job_image(settings, engine)
    assert not cold.cached and cold.reference.startswith("registry.tre.local/tre-job-cpu@sha256:")
    started = time.monotonic()
    warm = jobimage.build_cpu_job_image(settings, engine)
    assert warm.cached and warm.digest == cold.digest and time.monotonic() - started < 5
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    out.chmod(0o777)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        (data / name).write_bytes(Path(str(get_testdata_file(name))).read_bytes())
    rootfs = ImageStore(settings).rootfs(cold.digest)
    assert not (rootfs / "opt" / "tre" / "python" / "tre" / "api").exists()
    log = jobimage.smoke_test(rootfs, data, out)
    assert "network: unreachable as expected" in log
    assert (out / "summary.csv").is_file() and any((out / "preprocessed").rglob("*.nii.gz"))
    # The kernels compiled in the image load from its seed in a fresh job: no compilation.
    probe = subprocess.run(
        [*jobimage.sandbox_argv(rootfs, data, out), "python3", "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["status"] == "copied", report
    assert all(report["hits"][n] >= 1 for n in ("stats_pass", "normalize_pass")), report
    assert not any(report["misses"].values()), report
