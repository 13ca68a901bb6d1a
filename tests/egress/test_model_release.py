"""Model-release review of ONNX models: parsed graph, screened text, structural rules, and a
membership-inference attack whose predictions come from a real bubblewrap sandbox.

The models are real scikit-learn estimators exported with skl2onnx; the records are synthetic
tables written as a job would write them (outputs with recorded hashes) or kept in a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from egress_review.checks import CheckContext, CheckResult, run_checks, worst
from egress_review.checks.detect import detect
from egress_review.checks.membership import membership_attack
from egress_review.checks.model import Predictions
from egress_review.checks.onnx_model import inspect_onnx
from egress_review.model_sandbox import BwrapModelSandbox
from tre.executors.local import LocalExecutor
from tre.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
FEATURES = ["age", "lesion_mm", "hu_mean", "hu_sd", "volume_ml"]
CAN_SANDBOX = os.geteuid() == 0 and shutil.which("bwrap") is not None
needs_sandbox = pytest.mark.skipif(not CAN_SANDBOX, reason="the local sandbox needs root and bubblewrap")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("default", POLICIES)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> BwrapModelSandbox:
    tmp = tmp_path_factory.mktemp("model-sandbox")
    return BwrapModelSandbox(
        LocalExecutor(images_dir=tmp / "images", host_toolchain=True, expose_tre_package=False), tmp / "work"
    )


def records(n: int, seed: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy binary outcome from five features: a model can only learn it by memorising."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    y = (x[:, 0] + 0.5 * x[:, 1] + noise * rng.normal(size=n) > 0).astype(int)
    return x, y


def table(x: np.ndarray, y: np.ndarray) -> bytes:
    lines = [",".join([*FEATURES, "label"])]
    lines += [",".join([*(f"{v:.6f}" for v in row), str(label)]) for row, label in zip(x, y, strict=True)]
    return ("\n".join(lines) + "\n").encode()


class JobOutputs:
    """A job's output folder with recorded hashes, as the workflow hands it to the checks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.recorded: dict[str, tuple[Path, str]] = {}

    def write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.recorded[name] = (path, hashlib.sha256(data).hexdigest())
        return path

    def card(self, model: str, **extra: object) -> None:
        card = {
            "tre_model_card": 1,
            "models": [
                {
                    "model": model,
                    "training_data": "output:tables/train.csv",
                    "holdout_data": "output:tables/holdout.csv",
                    "label_column": "label",
                    **extra,
                }
            ],
        }
        self.write("model-card.json", json.dumps(card).encode())


def check(
    outputs: JobOutputs, name: str, policy: Policy, sandbox: BwrapModelSandbox | None, **ctx: object
) -> list[CheckResult]:
    context = CheckContext(job_outputs=outputs.recorded, model_sandbox=sandbox, **ctx)  # type: ignore[arg-type]
    return run_checks(outputs.root / name, name, policy, context)


def only(results: list[CheckResult], check_name: str) -> CheckResult:
    (found,) = [r for r in results if r.check == check_name]
    return found


def onnx_bytes(model: object, x: np.ndarray) -> bytes:
    return to_onnx(model, x[:1].astype(np.float32)).SerializeToString()


@needs_sandbox
def test_an_overfit_tree_is_flagged_by_membership_inference_and_leaf_rules(
    tmp_path: Path, policy: Policy, sandbox: BwrapModelSandbox
) -> None:
    x_train, y_train = records(200, seed=1)
    x_hold, y_hold = records(200, seed=2)
    tree = DecisionTreeClassifier(min_samples_leaf=1, random_state=0).fit(x_train, y_train)
    outputs = JobOutputs(tmp_path)
    outputs.write("models/tree.onnx", onnx_bytes(tree, x_train))
    outputs.write("tables/train.csv", table(x_train, y_train))
    outputs.write("tables/holdout.csv", table(x_hold, y_hold))
    outputs.card("models/tree.onnx")
    assert detect(tmp_path / "models/tree.onnx").detail == "ONNX model (protobuf)"

    results = check(outputs, "models/tree.onnx", policy, sandbox)

    mi = only(results, "model:membership")
    attack = mi.evidence["attack"]
    assert mi.outcome == "flag" and attack["auc"] > policy.models.mi_max_auc
    assert attack["members"] == attack["nonmembers"] == 200
    assert f"AUC {attack['auc']:.2f} (limit 0.6" in mi.reason and "gives away" in mi.reason
    structure = only(results, "model:structure")
    leaves = tree.get_n_leaves()
    assert (
        "routing the 200 training records" in structure.reason
        and "leaves 1 record in the smallest leaf" in structure.reason
    )
    report = only(results, "model:release_review").evidence["report"]
    assert report["tree_ensembles"][0]["leaves"] == leaves
    assert report["tree_ensembles"][0]["pure_leaves"] == leaves  # min_samples_leaf=1: every leaf pure
    assert report["training_records"] == 200
    assert report["operators"]["ai.onnx.ml:TreeEnsembleClassifier"] == 1
    assert worst(results) == "flag"


@needs_sandbox
def test_a_regularised_model_on_enough_records_passes_the_attack(
    tmp_path: Path, policy: Policy, sandbox: BwrapModelSandbox
) -> None:
    x_train, y_train = records(1500, seed=3)
    x_hold, y_hold = records(1500, seed=4)
    model = LogisticRegression(C=0.1).fit(x_train, y_train)
    outputs = JobOutputs(tmp_path)
    outputs.write("model.onnx", onnx_bytes(model, x_train))
    outputs.write("tables/train.csv", table(x_train, y_train))
    outputs.write("tables/holdout.csv", table(x_hold, y_hold))
    outputs.card("model.onnx", feature_columns=FEATURES)

    results = check(outputs, "model.onnx", policy, sandbox)

    mi = only(results, "model:membership")
    assert mi.outcome == "pass", mi.reason
    assert 0.4 < mi.evidence["attack"]["auc"] <= policy.models.mi_max_auc
    assert not [r for r in results if r.check == "model:structure"]
    # still routed to the reviewers: a model is never released on the checks alone
    assert only(results, "model:release_review").outcome == "flag"


@needs_sandbox
def test_records_may_come_from_a_dataset_of_the_job(
    tmp_path: Path, policy: Policy, sandbox: BwrapModelSandbox
) -> None:
    x_train, y_train = records(150, seed=5)
    x_hold, y_hold = records(150, seed=6)
    tree = DecisionTreeClassifier(random_state=0).fit(x_train, y_train)
    dataset = tmp_path / "dataset"
    (dataset / "clinical").mkdir(parents=True)
    (dataset / "clinical" / "train.tsv").write_bytes(table(x_train, y_train).replace(b",", b"\t"))
    (dataset / "clinical" / "holdout.tsv").write_bytes(table(x_hold, y_hold).replace(b",", b"\t"))
    outputs = JobOutputs(tmp_path / "out")
    outputs.write("tree.onnx", onnx_bytes(tree, x_train))
    card = {
        "training_data": "dataset:lidc/clinical/train.tsv",
        "holdout_data": "dataset:lidc/clinical/holdout.tsv",
        "label_column": "label",
    }
    outputs.write("tree.onnx.model-card.json", json.dumps(card).encode())

    results = check(outputs, "tree.onnx", policy, sandbox, datasets={"lidc": dataset})

    assert only(results, "model:membership").outcome == "flag"


def test_model_card_problems_are_fixed_sentences(tmp_path: Path, policy: Policy) -> None:
    x, y = records(100, seed=7)
    outputs = JobOutputs(tmp_path / "out")
    outputs.write("tree.onnx", onnx_bytes(DecisionTreeClassifier().fit(x, y), x))
    no_card = only(check(outputs, "tree.onnx", policy, None), "model:membership")
    assert no_card.outcome == "flag" and "no model card" in no_card.reason

    secret = tmp_path / "secret.csv"
    secret.write_bytes(table(x, y))
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    for ref, expected in [
        ("dataset:lidc/../secret.csv", "not a plain relative path"),
        ("dataset:other/train.csv", "a dataset this job did not read"),
        ("output:HOSP-77-1234.csv", "not a recorded output of this job"),
        ("/etc/passwd", "must start with 'output:' or 'dataset:'"),
    ]:
        card = {"training_data": ref, "holdout_data": ref, "label_column": "label"}
        outputs.write("tree.onnx.model-card.json", json.dumps(card).encode())
        found = only(
            check(outputs, "tree.onnx", policy, None, datasets={"lidc": dataset}), "model:membership"
        )
        assert found.outcome == "flag" and expected in found.reason
        # what the job wrote is for reviewers only, never in the reason
        assert ref not in found.reason and found.evidence["reviewer_only"]["detail"]

    (dataset / "escape.csv").symlink_to(secret)
    card = {"training_data": "dataset:lidc/escape.csv", "holdout_data": "dataset:lidc/escape.csv",
            "label_column": "label"}  # fmt: skip
    outputs.write("tree.onnx.model-card.json", json.dumps(card).encode())
    found = only(check(outputs, "tree.onnx", policy, None, datasets={"lidc": dataset}), "model:membership")
    assert "cannot be opened as a regular file" in found.reason

    (outputs.root / "tree.onnx.model-card.json").unlink()
    del outputs.recorded["tree.onnx.model-card.json"]
    outputs.write("tables/train.csv", table(x, y))
    outputs.write("tables/holdout.csv", table(x, y))
    outputs.card("tree.onnx")
    (outputs.root / "tables/train.csv").write_bytes(table(x[:50], y[:50]))  # changed after recording
    found = only(check(outputs, "tree.onnx", policy, None), "model:membership")
    assert "changed after the job recorded it" in found.reason

    outputs.write("tables/train.csv", table(x, y))
    found = only(check(outputs, "tree.onnx", policy, None), "model:membership")
    assert "no sandbox to run models in" in found.reason


def _graph_model(**kwargs: object) -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        initializer=kwargs.pop("initializer", []),  # type: ignore[arg-type]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], **kwargs)  # type: ignore[arg-type]


def test_malformed_onnx_is_refused_with_a_fixed_reason(tmp_path: Path, policy: Policy) -> None:
    x, y = records(100, seed=8)
    good = onnx_bytes(DecisionTreeClassifier().fit(x, y), x)
    outputs = JobOutputs(tmp_path)
    outputs.write("cut.onnx", good[: len(good) // 2])
    assert detect(tmp_path / "cut.onnx").type == "model"
    refused = only(check(outputs, "cut.onnx", policy, None), "model:format")
    assert refused.outcome == "block"
    assert refused.reason == "the file is not a valid ONNX model: its protobuf cannot be decoded"

    bad_op = _graph_model()
    bad_op.graph.node[0].op_type = "NotAnOperator"
    outputs.write("bad-op.onnx", bad_op.SerializeToString())
    refused = only(check(outputs, "bad-op.onnx", policy, None), "model:format")
    assert refused.outcome == "block" and "fails the ONNX checker" in refused.reason
    assert "NotAnOperator" not in refused.reason and refused.evidence["reviewer_only"]["parser"]


def test_external_weights_are_refused(tmp_path: Path, policy: Policy) -> None:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../../../etc/shadow")
    outputs = JobOutputs(tmp_path)
    outputs.write("ext.onnx", _graph_model(initializer=[weight]).SerializeToString())
    refused = only(check(outputs, "ext.onnx", policy, None), "model:format")
    assert refused.outcome == "block" and "stored in external files" in refused.reason
    assert "shadow" not in refused.reason


def test_a_patient_id_in_onnx_metadata_is_flagged(tmp_path: Path, policy: Policy) -> None:
    x, y = records(100, seed=9)
    model = onnx.load_model_from_string(onnx_bytes(LogisticRegression().fit(x, y), x))
    helper.set_model_props(model, {"trained_on": "cohort incl. HOSP-77-1234", "min_samples_leaf": "1"})
    outputs = JobOutputs(tmp_path)
    outputs.write("m.onnx", model.SerializeToString())
    ctx = {"identifiers": {"HOSP-77-1234", "DOE^JANE"}}
    results = check(outputs, "m.onnx", policy, None, **ctx)
    found = only(results, "model:identifiers")
    assert found.outcome == "block" and "ONNX model's metadata" in found.reason
    assert "HOSP-77-1234" not in json.dumps(found.model_dump())  # evidence masks it
    meta = only(results, "model:metadata")
    assert meta.outcome == "flag" and meta.evidence["reviewer_only"]["metadata_props"]["trained_on"]
    assert (
        only(results, "model:release_review").evidence["report"]["hyperparameters"]["min_samples_leaf"] == 1
    )
    # the claimed leaf size is judged too
    assert any(r.check == "model:structure" and "1 training sample" in r.reason for r in results)
    # a node name is job-written text as well
    named = onnx.load_model_from_string(onnx_bytes(LogisticRegression().fit(x, y), x))
    named.graph.node[0].name = "Doe Jane"
    outputs.write("n.onnx", named.SerializeToString())
    assert only(check(outputs, "n.onnx", policy, None, **ctx), "model:identifiers").outcome == "block"


def test_onnx_report_counts_parameters_and_operators() -> None:
    x, y = records(300, seed=10)
    report = inspect_onnx(onnx_bytes(LogisticRegression().fit(x, y), x))
    assert report.parameters == 2 * (len(FEATURES) + 1)  # coefficients + intercept, per class
    assert report.inputs[0]["shape"] == [None, len(FEATURES)] and report.inputs[0]["dtype"] == "float"
    assert report.opsets["ai.onnx"] >= 1 and "ai.onnx.ml:LinearClassifier" in report.operators


def test_the_attack_separates_memorised_from_unseen_records() -> None:
    rng = np.random.default_rng(0)
    # members: the model is sure of the right class; non-members: it guesses
    confident = np.column_stack([np.full(300, 0.02), np.full(300, 0.98)])
    guessing = rng.uniform(0.3, 0.7, size=300)
    unsure = np.column_stack([1 - guessing, guessing])
    labels = ["1"] * 300
    strong = membership_attack(
        Predictions(confident, "probabilities"), labels, Predictions(unsure, "probabilities"), labels
    )
    assert strong.auc > 0.95 and strong.advantage > 0.9 and strong.tpr_at_fpr["0.01"] > 0.9
    same = membership_attack(
        Predictions(unsure[:150], "probabilities"), labels[:150],
        Predictions(unsure[150:], "probabilities"), labels[150:],
    )  # fmt: skip
    assert 0.35 < same.auc < 0.65 and same.p_value > 0.01
