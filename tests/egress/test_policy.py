"""Policy loading: strict schema, clear errors, digests, image allowlist, docs and schema in sync."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel

from tre.policy import (
    JobRules,
    Policy,
    PolicyError,
    json_schema,
    load_all,
    load_policy,
    main,
    schema_text,
)

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
DIGEST = "sha256:" + "a" * 64


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_shipped_policies_load_with_version_and_digest() -> None:
    policies = load_all(POLICIES)
    assert {"default", "lidc-demo"} <= set(policies)
    default = policies["default"]
    assert default.version == "1.2.0"
    assert default.digest.startswith("sha256:") and len(default.digest) == 7 + 64
    assert default.required_reviews == 2
    # ACRO's defaults (acro/default.yaml): safe_threshold 10, safe_nk_n 2, safe_nk_k 0.9, safe_pratio_p 0.1.
    assert (default.sdc.threshold, default.sdc.nk_n, default.sdc.nk_k, default.sdc.p_percent) == (
        10,
        2,
        0.9,
        0.1,
    )
    lidc = policies["lidc-demo"]
    assert lidc.sdc.rounding_base == 5
    assert "dicom" not in lidc.files.allowed_types
    assert lidc.dicom.retain.patient_characteristics


def test_model_defaults_match_acro_and_two_person_rule() -> None:
    pol = Policy(name="x", version="1")
    assert pol.required_reviews == 2
    assert (pol.sdc.threshold, pol.sdc.p_percent, pol.sdc.nk_n, pol.sdc.nk_k) == (10, 0.1, 2, 0.9)


def test_digest_tracks_content(tmp_path: Path) -> None:
    write(tmp_path, "a", "name: a\nversion: '1'\n")
    first = load_policy("a", tmp_path).digest
    write(tmp_path, "a", "name: a\nversion: '1'\nrequired_reviews: 3\n")
    second = load_policy("a", tmp_path)
    assert second.digest != first
    assert second.required_reviews == 3


def test_unknown_key_is_rejected_with_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "typo", "name: typo\nversion: '1'\nsdc:\n  treshold: 5\n")
    with pytest.raises(PolicyError) as info:
        load_policy("typo", tmp_path)
    err = info.value
    assert err.file == str(path)
    assert err.field == "sdc.treshold"
    assert "unknown key" in err.reason
    assert err.line == 4  # the misspelt key's own line, in the one-line message too
    assert str(err) == (
        f"{path}: line 4: sdc.treshold: unknown key (did you mean 'threshold'? see policies/SCHEMA.md)"
    )


@pytest.mark.parametrize(
    ("yaml_text", "field", "words"),
    [
        # the closest key of the same section (newcomer round 23: 'typo?' alone)
        ("sdc:\n  treshold_action: block\n", "sdc.treshold_action", "did you mean 'threshold_action'?"),
        ("sdcc:\n  threshold: 5\n", "sdcc", "did you mean 'sdc'?"),
        ("image:\n  volumes:\n    max_voxel: 3\n", "image.volumes.max_voxel", "did you mean 'max_voxels'?"),
        ("zzz: 1\n", "zzz", "unknown key (see policies/SCHEMA.md)"),
        # a number where text is needed, as the file spells it ('Input should be a valid string')
        ("description: 1.10\n", "description", 'reads 1.10 as a number: put it in quotes ("1.10")'),
    ],
)
def test_a_mistake_is_named_with_what_to_write(
    tmp_path: Path, yaml_text: str, field: str, words: str
) -> None:
    write(tmp_path, "p", f"name: p\nversion: '1'\n{yaml_text}")
    with pytest.raises(PolicyError) as info:
        load_policy("p", tmp_path)
    assert info.value.field == field and words in info.value.reason, str(info.value)


def test_an_unquoted_version_says_to_quote_it(tmp_path: Path) -> None:
    write(tmp_path, "v", "name: v\nversion: 1.0\n")
    with pytest.raises(PolicyError, match=r'line 2: version: needs text, .* put it in quotes \("1.0"\)'):
        load_policy("v", tmp_path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, "bad", "name: bad\nversion: '1'\nsdc:\n  threshold: [1, 2\n")
    with pytest.raises(PolicyError) as info:
        load_policy("bad", tmp_path)
    assert "invalid YAML" in info.value.reason
    assert info.value.line is not None and f": line {info.value.line}: invalid YAML" in str(info.value)


def test_wrong_type_and_range_errors_name_the_field(tmp_path: Path) -> None:
    write(tmp_path, "t", "name: t\nversion: '1'\nfiles:\n  max_files: lots\n")
    with pytest.raises(PolicyError) as info:
        load_policy("t", tmp_path)
    assert info.value.field == "files.max_files"
    assert info.value.line == 4
    write(tmp_path, "r", "name: r\nversion: '1'\nsdc:\n  nk_k: 1.5\n")
    with pytest.raises(PolicyError) as info:
        load_policy("r", tmp_path)
    assert info.value.field == "sdc.nk_k"
    write(tmp_path, "a", "name: a\nversion: '1'\nfiles:\n  archives: maybe\n")
    with pytest.raises(PolicyError) as info:
        load_policy("a", tmp_path)
    assert info.value.field == "files.archives"
    write(tmp_path, "c", "name: c\nversion: '1'\nfiles:\n  allowed_types: [png, docx]\n")
    with pytest.raises(PolicyError) as info:
        load_policy("c", tmp_path)
    assert info.value.field == "files.allowed_types[1]"
    assert info.value.line == 4
    write(tmp_path, "d", "name: d\nversion: '1'\nfiles:\n  allowed_types:\n    - png\n    - docx\n")
    with pytest.raises(PolicyError) as info:
        load_policy("d", tmp_path)
    assert (info.value.field, info.value.line) == ("files.allowed_types[1]", 6)


def test_bad_regex_missing_version_name_mismatch_and_digest_in_yaml(tmp_path: Path) -> None:
    write(tmp_path, "rx", "name: rx\nversion: '1'\ndicom:\n  allowed_values:\n    PatientID: '(['\n")
    with pytest.raises(PolicyError, match="not a valid regex"):
        load_policy("rx", tmp_path)
    write(tmp_path, "nov", "name: nov\n")
    with pytest.raises(PolicyError) as info:
        load_policy("nov", tmp_path)
    assert info.value.field == "version"
    write(tmp_path, "mine", "name: other\nversion: '1'\n")
    with pytest.raises(PolicyError, match="file is named"):
        load_policy("mine", tmp_path)
    write(tmp_path, "dig", f"name: dig\nversion: '1'\ndigest: {DIGEST}\n")
    with pytest.raises(PolicyError) as info:
        load_policy("dig", tmp_path)
    assert info.value.field == "digest"
    write(tmp_path, "list", "- a\n- b\n")
    with pytest.raises(PolicyError, match="mapping"):
        load_policy("list", tmp_path)


def test_missing_policy_and_path_escape(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy; the policies folder .* holds none"):
        load_policy("absent", tmp_path)
    write(tmp_path, "strict", "name: strict\nversion: '1'\n")
    with pytest.raises(PolicyError, match="no such policy; the policies in .*: strict$"):
        load_policy("strictly", tmp_path)
    with pytest.raises(PolicyError, match="not a valid policy name"):
        load_policy("../default", tmp_path)


def test_load_all_raises_on_first_invalid(tmp_path: Path) -> None:
    shutil.copy(POLICIES / "default.yaml", tmp_path / "default.yaml")
    write(tmp_path, "zz", "name: zz\nversion: '1'\nbogus: 1\n")
    with pytest.raises(PolicyError) as info:
        load_all(tmp_path)
    assert info.value.field == "bogus"


def test_image_allowlist_needs_digest_and_match() -> None:
    rules = JobRules(allowed_images=["registry.tre.local/*@sha256:*"])
    assert rules.image_allowed(f"registry.tre.local/tre/preprocess@{DIGEST}")
    assert not rules.image_allowed("registry.tre.local/tre/preprocess:latest")
    assert not rules.image_allowed(f"docker.io/library/python@{DIGEST}")
    assert not rules.image_allowed(f"registry.tre.local/x@sha256:{'A' * 64}")  # digests are lower-case hex
    assert not rules.image_allowed(f"registry.tre.local/x @{DIGEST}")
    assert not rules.image_allowed("")
    assert not JobRules().image_allowed(f"registry.tre.local/x@{DIGEST}")  # empty allowlist denies all
    tags_ok = JobRules(allowed_images=["registry.tre.local/*"], require_digest=False)
    assert tags_ok.image_allowed("registry.tre.local/tre/preprocess:1.2")
    assert not tags_ok.image_allowed("evil.example/registry.tre.local/x:1")


def test_shipped_policies_admit_their_images() -> None:
    lidc = load_policy("lidc-demo", POLICIES)
    assert lidc.job.image_allowed(f"ghcr.io/tre-project/lidc-nodules@{DIGEST}")
    assert not load_policy("default", POLICIES).job.image_allowed(
        f"ghcr.io/tre-project/lidc-nodules@{DIGEST}"
    )


def test_schema_json_is_up_to_date() -> None:
    committed = (POLICIES / "schema.json").read_text()
    assert committed == schema_text(), "run: python -m tre.policy schema > policies/schema.json"
    schema = json.loads(committed)
    assert "digest" not in schema["properties"]
    assert schema["additionalProperties"] is False


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        out.append(path)
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_field_paths(ann, path + "."))
    return out


def test_schema_md_documents_every_field() -> None:
    doc = (POLICIES / "SCHEMA.md").read_text()
    missing = [p for p in _field_paths(Policy) if f"`{p}`" not in doc]
    assert not missing, f"policies/SCHEMA.md lacks: {missing}"


def test_cli_check_and_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(POLICIES)]) == 0
    assert "default 1.2.0 sha256:" in capsys.readouterr().out
    write(tmp_path, "bad", "name: bad\nversion: '1'\nnope: 1\n")
    assert main(["check", str(tmp_path)]) == 1
    assert "nope" in capsys.readouterr().err
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()
