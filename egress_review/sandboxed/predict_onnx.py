"""Run an ONNX model on record sets, inside the airlock's sandbox; standalone (numpy, onnxruntime).

Reads ``/data/model.onnx`` and ``/data/<set>.npy`` (float64 features, one row per record), and
writes ``/output/<set>.npy`` (float64: class probabilities, rows x classes, or regression
values, rows x 1) and ``/output/meta.json`` (``kind`` and the probability columns' class
names when the model gives them). The airlock validates everything written here: the model
is untrusted and runs in this process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

DATA = Path("/data")
OUT = Path("/output")
DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


def _probabilities(value: Any) -> tuple[np.ndarray, list[str]] | None:
    """A ZipMap output (a list of {class: probability}) or a float matrix of 2+ columns."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = sorted(value[0], key=str)
        return np.asarray([[float(row[k]) for k in keys] for row in value]), [str(k) for k in keys]
    array = np.asarray(value)
    if array.ndim == 2 and array.shape[1] >= 2 and array.dtype.kind == "f":
        return array.astype(np.float64), []
    return None


def main() -> int:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(DATA / "model.onnx"), options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].type not in DTYPES:
        print("the model needs exactly one numeric tensor input", file=sys.stderr)
        return 3
    name, dtype = inputs[0].name, DTYPES[inputs[0].type]
    meta: dict[str, Any] = {}
    for path in sorted(DATA.glob("*.npy")):
        features = np.load(path, allow_pickle=False).astype(dtype)
        outputs = session.run(None, {name: features})
        found = None
        for value in outputs:
            found = _probabilities(value)
            if found is not None:
                break
        if found is not None:
            values, classes = found
            meta = {"kind": "probabilities", "classes": classes}
        else:
            first = np.asarray(outputs[0], dtype=np.float64)
            values = first.reshape(len(features), -1)[:, :1]
            meta = {"kind": "regression", "classes": []}
        np.save(OUT / path.name, np.ascontiguousarray(values, dtype=np.float64), allow_pickle=False)
    (OUT / "meta.json").write_text(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
