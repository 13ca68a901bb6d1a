"""`tre dataset add lidc /srv/tre/lidc` as the README writes it, before the folder is there.

The answer was "dataset path /srv/tre/lidc is not a directory": true, but not what to do,
nor that the folder is read on the API's host, not where the admin typed the command
(round 19)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import World


def test_a_missing_dataset_folder_says_where_it_must_be(
    app_client, world: World, tmp_path: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "lidc"
    r = app_client.post(
        "/api/v1/datasets", headers=world.headers["root"], json={"id": "lidc", "path": str(missing)}
    )
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"dataset path {missing} is not a folder on the server: "), detail
    assert "give its absolute path" in detail, detail
    # Round 21: the server's own data folder (TRE_DATA_DIR), not a fixed "/srv/tre as root".
    assert f"its data folder is {settings.data_dir})" in detail, detail
