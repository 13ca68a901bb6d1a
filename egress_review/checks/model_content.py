"""What a model file carries besides its structure: the text in it (pickled strings, a
safetensors header, string arrays, notes added to a torch zip) and its arrays (a tensor that is
an input slice). Read without loading anything: pickles by opcode, arrays with
``allow_pickle=False``, safetensors by its header; bounded in bytes and arrays."""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from egress_review.checks.pickles import scan_pickle

# Arrays larger than this are not read for the picture test (the size rules speak for them).
MAX_ARRAY_BYTES = 64 * 1024 * 1024
MAX_ARRAYS = 64
MAX_TEXT_BYTES = 16 * 1024 * 1024
SAFETENSORS_DTYPES = {
    "F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "U8": "u1",
    "I16": "<i2", "U16": "<u2", "I32": "<i4", "U32": "<u4", "I64": "<i8", "U64": "<u8",
}  # fmt: skip


@dataclass
class ModelContent:
    texts: list[str] = field(default_factory=list)
    arrays: list[np.ndarray] = field(default_factory=list)


def _keep(out: ModelContent, arr: np.ndarray) -> None:
    if arr.dtype.names:  # a structured array's field names are the job's text (leaks10)
        out.texts.extend(arr.dtype.names)
    if arr.dtype.kind in "US":
        out.texts.extend(str(v) for v in arr.ravel()[:20000])
    elif arr.dtype.kind in "iuf" and arr.ndim >= 2 and len(out.arrays) < MAX_ARRAYS:
        if arr.nbytes <= MAX_ARRAY_BYTES and min(arr.shape[-2:]) >= 16:
            out.arrays.append(arr)


def _zip_texts(zf: zipfile.ZipFile, out: ModelContent) -> None:
    """Every member but raw tensor storage: pickles by their strings, others if they are text."""
    budget = MAX_TEXT_BYTES
    for info in zf.infolist():
        out.texts.append(info.filename)
        if budget <= 0 or "/data/" in info.filename:
            continue
        with zf.open(info) as fh:
            raw = fh.read(budget)
        budget -= len(raw)
        if info.filename.endswith(".pkl"):
            out.texts.extend(scan_pickle(raw).strings)
            continue
        try:
            out.texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue


def model_content(path: Path, detail: str) -> ModelContent:
    """The text and arrays of one model file of the detected format ``detail``."""
    out = ModelContent()
    detail = detail.lower()
    if "pickle" in detail:
        out.texts.extend(scan_pickle(path.read_bytes()).strings)
    elif "pytorch" in detail:
        with zipfile.ZipFile(path) as zf:
            _zip_texts(zf, out)
    elif "safetensors" in detail:
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
            out.texts.append(json.dumps(header, ensure_ascii=False))
            base = 8 + n
            for spec in header.values():
                if not isinstance(spec, dict) or spec.get("dtype") not in SAFETENSORS_DTYPES:
                    continue
                start, end = spec.get("data_offsets", [0, 0])
                shape = [int(s) for s in spec.get("shape") or []]
                if len(shape) < 2 or not 0 <= start <= end or end - start > MAX_ARRAY_BYTES:
                    continue
                fh.seek(base + start)
                dtype = np.dtype(SAFETENSORS_DTYPES[spec["dtype"]])
                buf = fh.read(end - start)
                if len(buf) == int(np.prod(shape)) * dtype.itemsize:
                    _keep(out, np.frombuffer(buf, dtype=dtype).reshape(shape))
    elif "onnx" in detail:
        import onnx
        from onnx import numpy_helper

        model = onnx.load_model_from_string(path.read_bytes())  # protobuf only, nothing runs
        for init in list(model.graph.initializer)[:MAX_ARRAYS]:
            if len(init.dims) >= 2 and len(init.raw_data) <= MAX_ARRAY_BYTES:
                _keep(out, numpy_helper.to_array(init))
    elif "numpy" in detail:
        loaded = np.load(path, allow_pickle=False)
        try:
            if isinstance(loaded, np.ndarray):
                _keep(out, loaded)
            else:
                for name in loaded.files[:MAX_ARRAYS]:
                    out.texts.append(name)
                    _keep(out, loaded[name])
        finally:
            if hasattr(loaded, "close"):
                loaded.close()
    return out
