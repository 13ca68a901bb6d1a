#!/usr/bin/env bash
# GPU check for tre.kernels (issue 5): real-CUDA correctness tests + the GPU benchmark.
#
# Run from the repository root on a machine with an NVIDIA GPU, python3, numpy, numba and
# numba-cuda. Wheels in ./.whl/*.whl (pydicom, nibabel, and numpy 2.4 -- numba-cuda 0.30.4
# still touches np.row_stack, which numpy 2.5 removed) are installed into /tmp/tre_site
# first when present (an offline machine); else they must be importable already. Everything is logged under $OUT
# (default ./gpu_out): env.txt, cuda_tests.txt, bench_cuda.txt, bench_cuda.json.
#
#   bash benchmarks/gpu_check.sh            # about 3-5 minutes on an H100
#   BENCH_METHODS="tre-cuda" bash benchmarks/gpu_check.sh   # skip the CPU comparison
set -u
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 NUMBA_ENABLE_CUDASIM=0
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/tre_site .whl/*.whl \
        && export PYTHONPATH=/tmp/tre_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv
    "$PY" - <<'PY'
import sys
import numba, numpy
from numba import cuda
print("python", sys.version.split()[0], "numpy", numpy.__version__, "numba", numba.__version__)
try:
    from importlib.metadata import version
    print("numba-cuda", version("numba-cuda"))
except Exception as exc:  # noqa: BLE001
    print("numba-cuda version unknown:", exc)
print("cuda available:", cuda.is_available(), "device:", cuda.get_current_device().name)
import pydicom, nibabel
print("pydicom", pydicom.__version__, "nibabel", nibabel.__version__)
PY
} 2>&1 | tee "$OUT/env.txt"

echo "== CUDA correctness tests (real GPU) ==" | tee "$OUT/cuda_tests.txt"
timeout 200 "$PY" -m pytest -q -p no:cacheprovider --noconftest -x tests/kernels/cuda_cases.py 2>&1 | tee -a "$OUT/cuda_tests.txt"
tests_rc=${PIPESTATUS[0]}

echo "== GPU benchmark ==" | tee "$OUT/bench_cuda.txt"
# shellcheck disable=SC2086
timeout 300 "$PY" benchmarks/bench_preprocess.py --device cuda --repeats "${BENCH_REPEATS:-20}" \
    --methods ${BENCH_METHODS:-tre-cuda tre} --json "$OUT/bench_cuda.json" 2>&1 | tee -a "$OUT/bench_cuda.txt"
bench_rc=${PIPESTATUS[0]}
# Issue 13, goal 5: a cohort from DICOM on disk to outputs on disk through the GPU kernels
# (decoding and writing on the CPU threads), against the CPU job, in series per second.
# COHORT_SERIES=0 skips it; the cohort is generated first (about a minute on 16 cores).
cohort_rc=0
if [ "${COHORT_SERIES:-8}" != 0 ]; then
    echo "== GPU cohort ==" | tee "$OUT/cohort.txt"
    # shellcheck disable=SC2086
    timeout "${COHORT_TIMEOUT:-420}" "$PY" benchmarks/bench_cohort.py --series "${COHORT_SERIES:-8}" \
        --workdir "${COHORT_DIR:-/tmp/tre-gpu-cohort}" --methods ${COHORT_METHODS:-tre tre-cuda tre-nii tre-cuda-nii} \
        --json "$OUT/cohort.json" 2>&1 | tee -a "$OUT/cohort.txt"
    cohort_rc=${PIPESTATUS[0]}
fi
echo "tests rc=$tests_rc bench rc=$bench_rc cohort rc=$cohort_rc" | tee -a "$OUT/env.txt"
exit $(( tests_rc != 0 || bench_rc != 0 || cohort_rc != 0 ))
