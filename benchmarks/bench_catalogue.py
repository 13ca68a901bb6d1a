"""Cost of the catalogue's facts and of a count query (issue 15, item 4).

Writes a synthetic dataset (N subjects, each a CT CHEST study of S slices and a PT series,
a third of them an MR HEAD study too: real DICOM files, headers only), registers it in a
fresh SQLite store, and prints: the time to extract the facts from the headers (paid at
registration and after the data changes), the time of a count query on the cached facts
(not re-checked, the default within TRE_CATALOGUE_RECHECK_S, and with the folder's
fingerprint re-checked every time, TRE_CATALOGUE_RECHECK_S=0), the time to build the JSON-LD
catalogue, and the ratios.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_catalogue.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_catalogue.py --subjects 2000 --slices 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydicom.uid import generate_uid  # noqa: E402

from tests.catalogue.support import policy_folder, write_series  # noqa: E402
from tre.catalogue.cache import refresh_facts  # noqa: E402
from tre.catalogue.counts import answer_count_query  # noqa: E402
from tre.catalogue.dcat import build_catalogue  # noqa: E402
from tre.catalogue.models import CountQuery  # noqa: E402
from tre.config import Settings, reset_settings_cache  # noqa: E402
from tre.registry import create_user, register_dataset  # noqa: E402
from tre.store.db import init_db, make_engine, session_scope  # noqa: E402
from tre.store.models import Dataset  # noqa: E402


def write_dataset(folder: Path, subjects: int, slices: int) -> int:
    for n in range(subjects):
        pid = f"SUBJ-{n:05d}"
        study = generate_uid()
        write_series(folder / pid, pid, study, "CT", "CHEST", files=slices)
        write_series(folder / pid, pid, study, "PT", "CHEST")
        if n % 3 == 0:
            write_series(folder / pid, pid, generate_uid(), "MR", "HEAD")
    return sum(1 for _ in folder.rglob("*.dcm"))


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["TRE_HOME"] = str(root / "home")  # the audit signer's keys live there too
        reset_settings_cache()
        settings = Settings(home=root / "home", policies_dir=policy_folder(root / "policies"))
        settings.ensure_dirs()
        data = root / "data" / "bench"
        files = write_dataset(data, args.subjects, args.slices)
        engine = make_engine(settings.resolved_database_url)
        init_db(engine)
        with session_scope(engine) as s:
            create_user(s, "bench", "root", ["admin"])
            register_dataset(s, "root", "bench", "bench", data, conditions=["icd10:C34"])
        query = CountQuery(modality="CT", body_part="CHEST", condition="icd10:C34")

        def ask() -> None:
            with session_scope(engine) as s:
                answer_count_query(s, settings, query, actor="bench")

        def catalogue() -> None:
            with session_scope(engine) as s:
                build_catalogue(s, settings)

        def extract() -> None:
            with session_scope(engine) as s:
                dataset = s.get(Dataset, "bench")
                assert dataset is not None
                refresh_facts(s, dataset)

        first = timed(extract, 3)  # what registration, or a query after the data changed, pays
        cached = timed(ask, args.repeat)
        settings.catalogue_recheck_s = 0.0
        rechecked = timed(ask, args.repeat)
        settings.catalogue_recheck_s = 60.0
        jsonld = timed(catalogue, args.repeat)
        print(f"dataset: {args.subjects} subjects, {files} DICOM files")
        print(f"extracting the facts (headers):   {first * 1000:9.1f} ms")
        for label, took in (("cached facts:       ", cached), ("fingerprint checked:", rechecked)):
            print(f"count query, {label} {took * 1000:9.1f} ms  (extraction/this {first / took:7.1f}x)")
        print(f"JSON-LD catalogue, cached facts:  {jsonld * 1000:9.1f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
