"""Job and collector pods can take no group from the image's /etc/group (redteam round 14).

With the API's default ``supplementalGroupsPolicy`` (Merge) the runtime adds every group the
image's /etc/group lists the job uid in, on top of runAsGroup and fsGroup: a hostile image
chose part of its job's identity. ``TRE_K8S_STRICT_SUPPLEMENTAL_GROUPS=true`` makes every
pod ask for Strict, and the manifests still pass ``kubernetes-validate --strict`` for each
supported version that has the field (1.31 on; it is off by default because 1.30, the
supported floor, and containerd 1.7 nodes cannot honour it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.conftest import SUPPORTED_K8S_VERSIONS, kubernetes_validate, write_docs
from tests.k8s.test_manifests import specs
from tre.executors.kubernetes import manifests as m
from tre.executors.kubernetes.config import KubernetesSettings

STRICT = KubernetesSettings(storage_class="fast-rwo", strict_supplemental_groups=True)
WITH_THE_FIELD = [v for v in SUPPORTED_K8S_VERSIONS if tuple(map(int, v.split(".")[:2])) >= (1, 31)]


@pytest.mark.parametrize("version", WITH_THE_FIELD)
def test_job_and_collector_pods_take_no_group_from_the_image(tmp_path: Path, version: str) -> None:
    docs = []
    for spec in specs(tmp_path):
        job = m.job(spec, STRICT)
        collector = m.collector_pod(spec, STRICT)
        for pod in (job["spec"]["template"]["spec"], collector["spec"]):
            context = pod["securityContext"]
            assert context["supplementalGroupsPolicy"] == "Strict"
            assert context["runAsGroup"] == STRICT.job_gid and "supplementalGroups" not in context
        docs += [job, collector]
    kubernetes_validate([write_docs(tmp_path / "pods.yaml", docs)], version)


def test_off_by_default_for_the_supported_floor(tmp_path: Path) -> None:
    """1.30 has no such field (strict validation refuses it) and containerd 1.7 nodes would
    refuse every pod: the default leaves it out, and the setting is documented."""
    job = m.job(specs(tmp_path)[0], KubernetesSettings(storage_class="fast-rwo"))
    assert "supplementalGroupsPolicy" not in job["spec"]["template"]["spec"]["securityContext"]
