#!/usr/bin/env bash
# End-to-end check of the Kubernetes backend on a real cluster (issue 18; plan and expected
# results: docs/k8s-test-plan.md). Creates a kind cluster with Calico and gVisor (or uses
# the current kubectl context: E2E_CLUSTER=existing, e.g. k3s with Calico and gVisor, and
# a GPU node with nvproxy for --gpu), installs k8s/base in two phases, then as the worker's
# own identity (system:serviceaccount:tre-system:tre-controller):
#   1. submits every negative admission case in k8s/e2e/negative/ (each must be denied) and
#      the unmodified manifests (each must be admitted);
#   2. checks what RBAC grants the worker;
#   3. runs k8s/e2e/drive.py: success, failure, cancellation, network probes from a job pod,
#      the collector hijack, a 600 MiB output, a dropped exec connection, a forced 410 on
#      watch, a killed worker (reattach), CUDA under gVisor (--gpu), and cleanup after each.
#
# Usage:  k8s/e2e/run.sh [--gpu] [--keep]
# Needs:  kubectl, jq, python3 (>= 3.11, with venv), docker; kind for E2E_CLUSTER=kind;
#         internet access from the machine and the nodes (images, Calico, gVisor).
# Env:    E2E_CLUSTER=kind|existing  E2E_NAME=tre-e2e  E2E_JOB_IMAGE=<image@sha256:…>
#         E2E_CUDA_IMAGE=<image@sha256:…> (with --gpu)  E2E_STORAGE_CLASS=<class>
#         E2E_GPU_SELECTOR='{"tre.io/pool": "gpu"}'  E2E_WORK=<dir>
#         E2E_COLLECTOR_IMAGE=<minimal python3 image@sha256:…> (default: the one in admission-params.yaml)
# Exit:   0 when every check passed; otherwise the number of failed checks (capped at 100).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E="$ROOT/k8s/e2e"
CLUSTER=${E2E_CLUSTER:-kind}
NAME=${E2E_NAME:-tre-e2e}
WORKER=system:serviceaccount:tre-system:tre-controller
NS=tre-p-e2e
CALICO_VERSION=${E2E_CALICO_VERSION:-v3.28.2}
GVISOR_URL=${E2E_GVISOR_URL:-https://storage.googleapis.com/gvisor/releases/release/latest/x86_64}
GPU=0
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--gpu] [--keep]" >&2; exit 2 ;;
  esac
done
export E2E_WORK=${E2E_WORK:-$(mktemp -d -t tre-e2e-XXXXXX)}
FAILED=0

need() { command -v "$1" >/dev/null || { echo "missing tool: $1" >&2; exit 2; }; }
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILED=$((FAILED + 1)); }
log() { echo "--- $*"; }

need kubectl; need jq; need python3; need docker
[[ $CLUSTER == kind ]] && need kind

cleanup() {
  if [[ $CLUSTER == kind && $KEEP == 0 ]]; then kind delete cluster --name "$NAME" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# --- 0. cluster ----------------------------------------------------------------------------
if [[ $CLUSTER == kind ]]; then
  log "kind cluster $NAME with Calico $CALICO_VERSION and gVisor"
  cat > "$E2E_WORK/kind.yaml" <<KIND
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  disableDefaultCNI: true
  podSubnet: 192.168.0.0/16
nodes:
  - role: control-plane
  - role: worker
    labels:
      tre.io/pool: cpu
KIND
  kind create cluster --name "$NAME" --config "$E2E_WORK/kind.yaml" --wait 60s || true
  kubectl apply -f "https://raw.githubusercontent.com/projectcalico/calico/$CALICO_VERSION/manifests/calico.yaml" >/dev/null
  kubectl -n kube-system rollout status ds/calico-node --timeout=300s
  kubectl wait --for=condition=Ready nodes --all --timeout=300s
  for node in $(kind get nodes --name "$NAME"); do
    docker exec "$node" sh -ec "
      cd /usr/local/bin
      curl -fsSLO $GVISOR_URL/runsc && curl -fsSLO $GVISOR_URL/containerd-shim-runsc-v1
      chmod 0755 runsc containerd-shim-runsc-v1
      cat >> /etc/containerd/config.toml <<'TOML'
[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc]
  runtime_type = \"io.containerd.runsc.v1\"
TOML
      systemctl restart containerd"
  done
  kubectl wait --for=condition=Ready nodes --all --timeout=300s
else
  log "using the current context: $(kubectl config current-context)"
fi

# --- 1. images -----------------------------------------------------------------------------
if [[ -z ${E2E_JOB_IMAGE:-} ]]; then
  docker pull -q python:3.12-slim >/dev/null
  E2E_JOB_IMAGE=$(docker inspect --format '{{index .RepoDigests 0}}' python:3.12-slim)
fi
export E2E_JOB_IMAGE
log "job image $E2E_JOB_IMAGE"

# --- 2. install the TRE manifests: policies first, then RBAC and workloads ----------------
kubectl kustomize "$ROOT/k8s/base" > "$E2E_WORK/tre.yaml"
kubectl apply -f "$E2E_WORK/tre.yaml" -l tre.io/install-phase=policy
if [[ -n ${E2E_COLLECTOR_IMAGE:-} ]]; then  # another minimal Python image, by digest
  kubectl -n tre-system patch configmap tre-admission-params --type=merge \
    -p "{\"data\": {\"collector-image\": \"$E2E_COLLECTOR_IMAGE\"}}" >/dev/null
fi
for _ in $(seq 60); do
  pending=$(kubectl get validatingadmissionpolicy -l tre.io/install-phase=policy -o json \
    | jq '[.items[] | select(.status.observedGeneration != .metadata.generation)] | length')
  [[ $pending == 0 ]] && break
  sleep 2
done
warnings=$(kubectl get validatingadmissionpolicy -l tre.io/install-phase=policy -o json \
  | jq -r '.items[] | select(.status.typeChecking.expressionWarnings != null) | .metadata.name')
if [[ -n $warnings ]]; then fail "policy type checking: warnings in $warnings"; else pass "policies loaded and type-checked"; fi
kubectl apply -f "$E2E_WORK/tre.yaml" -l 'tre.io/install-phase!=policy' >/dev/null
# No control-plane image is built here: the executor runs from this machine as the worker.
kubectl -n tre-system scale deployment tre-api tre-worker --replicas=0 >/dev/null
# The worker's API egress: the API server's endpoint addresses (see docs/deploy.md).
api_ips=$(kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes -o json \
  | jq -c '[.items[].endpoints[].addresses[] | {ipBlock: {cidr: (. + "/32")}}]')
kubectl -n tre-system patch networkpolicy tre-worker-apiserver --type=json \
  -p "[{\"op\": \"replace\", \"path\": \"/spec/egress/0/to\", \"value\": $api_ips}]" >/dev/null

# The administrator's kubeconfig (checks and set-up only) and the worker's: its own service
# account token, nothing else.
kubectl config view --raw --minify > "$E2E_WORK/admin.kubeconfig"
export E2E_ADMIN_KUBECONFIG="$E2E_WORK/admin.kubeconfig"
server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
token=$(kubectl create token tre-controller -n tre-system --duration=3h)
cat > "$E2E_WORK/worker.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
current-context: worker
clusters: [{name: e2e, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: tre-controller, user: {token: "$token"}}]
contexts: [{name: worker, context: {cluster: e2e, user: tre-controller}}]
KCFG

# Python with the tre package for the executor.
python3 -m venv "$E2E_WORK/venv"
"$E2E_WORK/venv/bin/pip" install -q "$ROOT" jsonpatch
PY="$E2E_WORK/venv/bin/python"

# The project namespace, created by the executor as the worker (admitted by the policies).
KUBECONFIG="$E2E_WORK/worker.kubeconfig" "$PY" -c "
from pathlib import Path
from tre.executors.kubernetes import KubernetesExecutor, KubernetesSettings
print(KubernetesExecutor(KubernetesSettings(kubeconfig=Path('$E2E_WORK/worker.kubeconfig'))).ensure_namespace('e2e'))
" && pass "project namespace provisioned by the worker" || fail "project namespace provisioning"
# The dataset claim, as an administrator creates it (ReadWriteOnce: kind's local-path class
# has no ReadOnlyMany; the job still mounts it read-only).
kubectl patch --local -f "$E2E/manifests/dataset-pvc.yaml" --type=json \
  -p '[{"op": "replace", "path": "/spec/accessModes", "value": ["ReadWriteOnce"]}]' -o json \
  | kubectl apply -f - >/dev/null
# A pod in another namespace the job must not reach.
kubectl -n default run e2e-target --image="$E2E_JOB_IMAGE" --port=8080 -- python3 -m http.server 8080 >/dev/null
kubectl -n default wait --for=condition=Ready pod/e2e-target --timeout=180s >/dev/null
export E2E_OTHER_POD_IP=$(kubectl -n default get pod e2e-target -o jsonpath='{.status.podIP}')

# --- 3. admission, as the worker -------------------------------------------------------------
log "admission: negative cases as $WORKER"
as_worker=(kubectl --as="$WORKER")
for base in job.yaml gpu-job.yaml output-pvc.yaml; do
  if "${as_worker[@]}" create --dry-run=server -f "$E2E/manifests/$base" >/dev/null 2>"$E2E_WORK/err"; then
    pass "admitted: $base"
  else
    fail "not admitted: $base: $(head -c 300 "$E2E_WORK/err")"
  fi
done
for case in "$E2E"/negative/*.json; do
  name=$(basename "$case" .json)
  op=$(jq -r .operation "$case")
  base="$E2E/manifests/$(jq -r .base "$case")"
  patched="$E2E_WORK/$name.json"
  kubectl patch --local -f "$base" --type=json -p "$(jq -c .patch "$case")" -o json > "$patched"
  # A case set in a namespace an operator made by hand (e.g. without the project label).
  if jq -e 'has("namespace_labels")' "$case" >/dev/null; then
    kubectl create namespace "$(jq -r .metadata.namespace "$patched")" --dry-run=client -o json \
      | jq --argjson l "$(jq -c .namespace_labels "$case")" '.metadata.labels = $l' \
      | kubectl apply -f - >/dev/null
  fi
  case $op in
    CREATE) out=$("${as_worker[@]}" create --dry-run=server -f "$patched" 2>&1) && rc=0 || rc=$? ;;
    # Server-side apply is a PATCH, the verb the worker's RBAC grants: the policy is reached.
    UPDATE) out=$("${as_worker[@]}" apply --server-side --force-conflicts --field-manager=tre-e2e \
              --dry-run=server -f "$patched" 2>&1) && rc=0 || rc=$? ;;
    DELETE) out=$("${as_worker[@]}" delete --dry-run=server -f "$patched" 2>&1) && rc=0 || rc=$? ;;
  esac
  want=$(jq -r .expect_denied_by "$case")
  if [[ $rc != 0 && $out == *"ValidatingAdmissionPolicy '$want'"* ]]; then
    pass "denied by $want: $(jq -r .bypass "$case")"
  elif [[ $rc != 0 && $out == *"forbidden"* && $out != *"ValidatingAdmissionPolicy"* ]]; then
    pass "denied by RBAC (policy $want not reached): $(jq -r .bypass "$case")"
  else
    fail "$name was not denied by $want: $out"
  fi
done

# --- 4. RBAC of the worker -------------------------------------------------------------------
log "RBAC: what the worker may not do"
for check in "get secrets -n $NS" "create pods -n kube-system" "create pods --subresource=exec -n tre-system" \
  "get configmaps -n tre-system" "delete validatingadmissionpolicies" "patch clusterroles" \
  "create clusterrolebindings" "delete resourcequotas -n $NS" "delete namespaces" \
  "patch jobs -n $NS" "create services -n $NS" "update pods --subresource=ephemeralcontainers -n $NS" \
  "update persistentvolumeclaims -n $NS" "create persistentvolumes"; do
  # shellcheck disable=SC2086
  if [[ $(kubectl auth can-i --as="$WORKER" $check) == no ]]; then pass "cannot $check"; else fail "can $check"; fi
done
# RBAC alone allows this one: only the policy tre-project-namespaces stops it (negative case 15).
echo "INFO RBAC allows 'create rolebindings -n kube-system': $(kubectl auth can-i --as="$WORKER" create rolebindings -n kube-system) (the policy denies it)"

# --- 5. the executor's scenarios, as the worker --------------------------------------------------
log "executor scenarios"
gpu_flag=()
[[ $GPU == 1 ]] && gpu_flag=(--gpu)
set +e
KUBECONFIG="$E2E_WORK/worker.kubeconfig" PYTHONPATH="$ROOT" "$PY" "$E2E/drive.py" "${gpu_flag[@]}"
drive_failed=$?
set -e
FAILED=$((FAILED + drive_failed))

echo "=== $FAILED check(s) failed; work directory $E2E_WORK"
exit $((FAILED > 100 ? 100 : FAILED))
