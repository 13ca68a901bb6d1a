"""The project quota's settings are checked when the worker starts, not at the first job."""

from __future__ import annotations

import pytest

from tre.config import SettingsError
from tre.executors.kubernetes.config import load_kubernetes_settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRE_K8S_QUOTA_MEMORY", "128GB"),  # the usual typo: GB is not a Kubernetes suffix
        ("TRE_K8S_QUOTA_CPU", "thirty-two"),
        ("TRE_K8S_QUOTA_STORAGE", "0"),
        ("TRE_K8S_QUOTA_EPHEMERAL_STORAGE", "-1Gi"),
        ("TRE_K8S_QUOTA_GPU", "-1"),
        ("TRE_K8S_QUOTA_JOBS", "0"),
    ],
)
def test_a_bad_quota_stops_the_worker_with_its_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_kubernetes_settings()
    assert str(err.value).startswith(f"invalid setting {name}=")
    assert "\n" not in str(err.value)


def test_kubernetes_quantities_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (
        ("TRE_K8S_QUOTA_CPU", "1500m"),
        ("TRE_K8S_QUOTA_MEMORY", "64Gi"),
        ("TRE_K8S_QUOTA_STORAGE", "2Ti"),
        ("TRE_K8S_QUOTA_EPHEMERAL_STORAGE", "10G"),
        ("TRE_K8S_QUOTA_GPU", "0"),
    ):
        monkeypatch.setenv(name, value)
    s = load_kubernetes_settings()
    assert (s.quota_cpu, s.quota_memory, s.quota_storage, s.quota_gpu) == ("1500m", "64Gi", "2Ti", 0)
