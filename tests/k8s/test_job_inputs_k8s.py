"""A Kubernetes job reading earlier jobs' outputs: the read-only ``job-inputs`` claim, one
subPath per input at /inputs/<id>; the manifests validate, the admission policy admits them
and refuses every weakened variant, and the executor sends them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.celharness import JOB_CONTROLLER, admit, denials_after, params
from tests.k8s.conftest import kubernetes_validate, write_docs
from tests.k8s.fakekube import FakeApiServer, Scenario
from tests.k8s.test_admission_policy import controller_pod
from tests.k8s.test_executor_fake_api import SUCCESS, executor_for, make_tar, spec_for
from tests.k8s.test_manifests import SETTINGS
from tre.executors.base import DatasetMount, InputMount, RunControl
from tre.executors.kubernetes import manifests as m

A, B = "a1" * 16, "b2" * 16


def _inputs(tmp_path: Path, *ids: str) -> list[InputMount]:
    return [InputMount(i, tmp_path / i / "output", f"/inputs/{i}") for i in ids]


def test_inputs_are_read_only_subpaths_of_the_inputs_claim(tmp_path: Path) -> None:
    datasets = [DatasetMount("lidc", pvc_name="dataset-lidc")]
    spec = spec_for(tmp_path, datasets=datasets, inputs=_inputs(tmp_path, A, B), code_hash="c0de" * 16)
    job = m.job(spec, SETTINGS)
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["job-inputs"]["persistentVolumeClaim"] == {
        "claimName": "tre-job-outputs",
        "readOnly": True,
    }
    assert params()["data"]["inputs-claim"] == SETTINGS.inputs_claim_name
    (container,) = pod["containers"]
    assert [vm for vm in container["volumeMounts"] if vm["name"] == "job-inputs"] == [
        {"name": "job-inputs", "mountPath": f"/inputs/{i}", "subPath": f"{i}/output", "readOnly": True}
        for i in (A, B)
    ]
    kubernetes_validate([write_docs(tmp_path / "job.yaml", [job])])
    verdict = admit(job)
    assert verdict.matched and verdict.allowed, verdict.denials
    assert admit(controller_pod(job), username=JOB_CONTROLLER).allowed

    def denied(mutate) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
        return denials_after(job, mutate)

    def first_input(p):  # type: ignore[no-untyped-def]
        return next(vm for vm in p["containers"][0]["volumeMounts"] if vm["name"] == "job-inputs")

    claim = lambda p: next(v for v in p["volumes"] if v["name"] == "job-inputs")  # noqa: E731
    assert denied(lambda p: first_input(p).pop("readOnly"))  # writable
    assert denied(lambda p: first_input(p).pop("subPath"))  # every job's outputs
    assert denied(lambda p: first_input(p).update(subPath=f"{A}"))  # the job folder (its log)
    assert denied(lambda p: first_input(p).update(subPath="../code/output"))
    assert denied(lambda p: first_input(p).update(mountPath=f"/inputs/{B}"))  # A's outputs named B
    assert denied(lambda p: first_input(p).update(mountPath="/code"))
    assert denied(lambda p: claim(p)["persistentVolumeClaim"].pop("readOnly"))
    assert denied(lambda p: claim(p)["persistentVolumeClaim"].update(claimName="tre-state"))
    # fetch-code (the one init container, the control plane's image) may not read them either.
    assert not denied(lambda p: None)
    assert denied(lambda p: p["initContainers"][0]["volumeMounts"].append(dict(first_input(p))))

    with pytest.raises(ValueError, match="/inputs/<its id>"):
        m.job(spec_for(tmp_path, inputs=[InputMount("../x", tmp_path, "/inputs/../x")]), SETTINGS)
    plain = m.job(spec_for(tmp_path), SETTINGS)["spec"]["template"]["spec"]
    assert all(v["name"] != "job-inputs" for v in plain["volumes"])


def test_kubernetes_executor_sends_the_input_mounts(tmp_path: Path) -> None:
    scenario = Scenario(SUCCESS, logs=b"ok\n", output_tar=make_tar({"r.txt": b"1\n"}))
    with FakeApiServer(scenario, tmp_path) as server:
        spec = spec_for(tmp_path, inputs=_inputs(tmp_path, A), env={"TRE_INPUTS": f"/inputs/{A}"})
        result = executor_for(server).run(spec, RunControl())
        sent = server.calls("POST", r"/jobs$")[0].body
    assert result.state == "succeeded", result.reason
    container = sent["spec"]["template"]["spec"]["containers"][0]
    assert {
        "name": "job-inputs",
        "mountPath": f"/inputs/{A}",
        "subPath": f"{A}/output",
        "readOnly": True,
    } in (container["volumeMounts"])
    assert {"name": "TRE_INPUTS", "value": f"/inputs/{A}"} in container["env"]
