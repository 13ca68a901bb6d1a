"""Kubernetes job backend: `KubernetesExecutor` plus the pure manifest builders it sends."""

from tre.executors.kubernetes.config import KubernetesSettings
from tre.executors.kubernetes.executor import KubernetesExecutor

__all__ = ["KubernetesExecutor", "KubernetesSettings"]
