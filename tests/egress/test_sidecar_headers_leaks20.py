"""A dataset's sidecar tables are read whole only where their header has a patient-id or an
identifier column (leaks20). Before, the identifier pass read every table of a dataset (up to
64 MiB each) for patient columns, also a table of measurements that has none."""

from __future__ import annotations

from pathlib import Path

import pytest

from egress_review.checks import identifiers
from egress_review.checks.identifiers import dataset_patients, gather_identifiers
from tests.egress.planted_round14 import build_cohort

ROWS = 500


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """``rows`` under ``header`` as CSV, TSV, XLSX or Parquet, by ``path``'s suffix."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({h: [str(r[i]) for r in rows] for i, h in enumerate(header)}), path)
    elif path.suffix == ".xlsx":
        import openpyxl

        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append(header)
        for row in rows:
            ws.append(row)
        wb.save(path)
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        path.write_text("".join(sep.join(map(str, r)) + "\n" for r in [header, *rows]))
    return path


@pytest.fixture
def rows_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows each whole read of a sidecar table returned, in order."""
    monkeypatch.setattr(identifiers, "_CACHE", type(identifiers._CACHE)())
    counted: list[int] = []
    real = identifiers._sidecar_tables

    def counting(path: Path) -> list[tuple[list[str], list[list[str]]]]:
        tables = real(path)
        counted.append(sum(len(rows) for _, rows in tables))
        return tables

    monkeypatch.setattr(identifiers, "_sidecar_tables", counting)
    return counted


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx", ".parquet"])
def test_a_table_without_patient_or_identifier_columns_is_not_read(
    tmp_path: Path, suffix: str, rows_read: list[int]
) -> None:
    """A table of measurements beside the headers: its rows are not read (ROWS before)."""
    root = build_cohort(tmp_path / "ds", patients=3)
    _write(
        root / f"radiomics{suffix}",
        ["lesion", "volume_ml", "hu_mean"],
        [[i, i * 0.5, 40] for i in range(ROWS)],
    )
    assert len(gather_identifiers(root)) > 0
    assert len(dataset_patients(root)) == 3
    assert rows_read == []


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".parquet"])
def test_a_table_with_a_patient_or_identifier_column_is_still_read(
    tmp_path: Path, suffix: str, rows_read: list[int]
) -> None:
    """A clinical table keyed by patient is read (its patients count); a table whose only
    identifier column is one the policy names is read for identifiers."""
    root = build_cohort(tmp_path / "ds", patients=3)
    rows = [[f"ZQX-{i:04d}", i % 3] for i in range(5)]
    _write(root / f"clinical{suffix}", ["patient_id", "stage"], rows)
    assert len(dataset_patients(root)) == 5  # 3 with images, 2 more in the table
    assert rows_read == [5]
    other = build_cohort(tmp_path / "other", patients=2)
    _write(other / f"accessions{suffix}", ["accession_no", "modality"], [["ACC-991234", "CT"]])
    assert "ACC-991234" in gather_identifiers(other, identifier_columns=("accession*",))
    assert rows_read == [5, 1]
