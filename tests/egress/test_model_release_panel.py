"""A model released through the real request path: the API freezes the ONNX file, the
workflow finds the model card among the job's (unrequested) outputs, runs the model in the
bubblewrap sandbox, and reviewers see the report in the panel; the requester does not see
the reviewer-only parts."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.tree import DecisionTreeClassifier

from tests.egress.test_api_panel import BASE, login
from tests.egress.test_model_release import onnx_bytes, records, table
from tests.egress.test_workflow_support import seed_world, with_egress_routes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bwrap") is None, reason="the local sandbox needs root and bubblewrap"
)


def test_an_overfit_model_is_reported_to_reviewers(app, db, esettings, token_for) -> None:  # type: ignore[no-untyped-def]
    x_train, y_train = records(200, seed=11)
    x_hold, y_hold = records(200, seed=12)
    tree = DecisionTreeClassifier(random_state=0).fit(x_train, y_train)
    card = {
        "model": "model/tree.onnx",
        "training_data": "output:tables/train.csv",
        "holdout_data": "output:tables/holdout.csv",
        "label_column": "label",
    }
    outputs = {
        "model/tree.onnx": onnx_bytes(tree, x_train.astype(np.float32)),
        "model/model-card.json": json.dumps(card).encode(),
        "tables/train.csv": table(x_train, y_train),
        "tables/holdout.csv": table(x_hold, y_hold),
    }
    with db.begin() as s:
        world = seed_world(s, esettings, outputs)
    panel = with_egress_routes(app)
    with TestClient(panel) as c:
        r = c.post(
            BASE,
            headers={"Authorization": f"Bearer {token_for(world.researcher, 'researcher')}"},
            json={"job_id": world.job_id, "files": ["model/tree.onnx"], "justification": "nodule classifier"},
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        (mine,) = r.json()["files"]
        checks = {c["check"]: c for c in mine["checks"]}
        mi = checks["model:membership"]
        assert mi["outcome"] == "flag" and mi["evidence"]["attack"]["auc"] > 0.6
        assert "reviewer_only" not in mi["evidence"]  # the card's name is the job's text
        assert "routing the 200 training records" in checks["model:structure"]["reason"]

        login(c, token_for("dana", "dac"))
        page = c.get(f"/panel/requests/{rid}").text
        assert "Membership-inference attack" in page and "Model-release report" in page
        assert "200 training / 200 held out" in page
        assert "model/model-card.json" in page  # reviewers see which card was used
