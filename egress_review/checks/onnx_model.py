"""ONNX models read as what they are: a protobuf graph, parsed and never executed here.

An ONNX file is a `ModelProto`: the graph's operators, its weights (initializers), its inputs
and outputs, the opsets it needs, and free text (``metadata_props``, doc strings, names) that
the job wrote. `onnx.load_model_from_string` only decodes the protobuf, so it is safe in the
API process; running the model happens in a sandbox (`egress_review.model_sandbox`).

What a reviewer needs from it, in the spirit of SACRO-ML: how many parameters (initializer
elements, tree nodes and leaf weights), what kind of model (tree ensembles get leaf counts and
leaf weights, from which leaf sizes are bounded), and the job-written text screened like any
other text. Weights stored in an external file are refused: the file under review must be
the whole model, and the reference is a path the job chose.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto

from egress_review.checks.model import OnnxRefused
from tre import plural

TREE_OPS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"})
ML_DOMAIN = "ai.onnx.ml"
STANDARD_DOMAINS = frozenset({"", "ai.onnx", ML_DOMAIN, "ai.onnx.preview.training"})
"""Domains whose operators the ONNX checker validates against the standard's schemas."""
MAX_TEXTS = 5000


@dataclass
class TreeSummary:
    """One tree-ensemble operator: how many trees and leaves, and what the leaves hold."""

    op: str
    trees: int = 0
    nodes: int = 0
    leaves: int = 0
    leaf_weights: int = 0
    pure_leaves: int = 0
    """Classifier leaves whose weight vector names a single class (all others zero)."""
    min_leaf_count: float | None = None
    """Smallest per-leaf weight sum, when the weights are whole counts (some converters store
    class counts rather than probabilities): then it *is* the fewest samples in a leaf."""

    routing: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """The split attributes (v1-3 operators): enough to route records to leaves without
    running the model (`leaf_occupancy`)."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "operator": self.op,
            "trees": self.trees,
            "nodes": self.nodes,
            "leaves": self.leaves,
            "leaf_weights": self.leaf_weights,
            "pure_leaves": self.pure_leaves,
        }
        if self.min_leaf_count is not None:
            out["min_leaf_samples"] = self.min_leaf_count
        return out


@dataclass
class OnnxReport:
    """The structure of one ONNX model, as plain data for the review report."""

    ir_version: int = 0
    producer: str = ""
    opsets: dict[str, int] = field(default_factory=dict)
    operators: Counter[str] = field(default_factory=Counter)
    custom_domains: list[str] = field(default_factory=list)
    initializers: int = 0
    parameters: int = 0
    dtypes: Counter[str] = field(default_factory=Counter)
    largest: list[tuple[str, list[int]]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    trees: list[TreeSummary] = field(default_factory=list)
    class_labels: list[Any] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    """Every job-written string (names, doc strings, metadata): screened as text."""

    @property
    def leaves(self) -> int:
        return sum(t.leaves for t in self.trees)

    def as_dict(self) -> dict[str, Any]:
        """The part of the report every viewer may see: counts and types, no job-written text."""
        out: dict[str, Any] = {
            "format": "ONNX model (protobuf)",
            "ir_version": self.ir_version,
            "opsets": self.opsets,
            "operators": dict(self.operators.most_common(30)),
            "initializers": self.initializers,
            "parameters": self.parameters,
            "dtypes": sorted(self.dtypes),
            "largest_shapes": [shape for _name, shape in self.largest[:5]],
            "inputs": [{k: v for k, v in i.items() if k != "name"} for i in self.inputs[:10]],
            "outputs": [{k: v for k, v in o.items() if k != "name"} for o in self.outputs[:10]],
            "metadata_keys": len(self.metadata),
        }
        if self.custom_domains:
            out["custom_domains"] = len(self.custom_domains)
        if self.trees:
            out["tree_ensembles"] = [t.as_dict() for t in self.trees[:10]]
            out["leaves"] = self.leaves
        if self.class_labels:
            out["classes"] = len(self.class_labels)
        return out


def _type_of(value_type: onnx.TypeProto) -> dict[str, Any]:
    kind = value_type.WhichOneof("value")
    if kind == "tensor_type":
        tt = value_type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        return {"kind": "tensor", "dtype": _dtype_name(tt.elem_type), "shape": dims}
    return {"kind": kind or "unknown"}


def _dtype_name(code: int) -> str:
    try:
        return TensorProto.DataType.Name(code).lower()
    except ValueError:
        return f"type{code}"


def _graphs(graph: GraphProto, depth: int = 0) -> Iterator[GraphProto]:
    """The graph and every subgraph (If/Loop/Scan bodies), depth-bounded against crafted nesting."""
    yield graph
    if depth >= 32:
        return
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _graphs(attr.g, depth + 1)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g, depth + 1)


def _tensors(model: ModelProto) -> Iterator[TensorProto]:
    """Every stored tensor: initializers, sparse initializers and Constant/attribute tensors."""
    for graph in _graphs(model.graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == AttributeProto.TENSORS:
                    yield from attr.tensors
    for function in model.functions:
        for node in function.node:
            for attr in node.attribute:
                if attr.type == AttributeProto.TENSOR:
                    yield attr.t


def _attr(node: NodeProto, name: str) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return None


def _tree_summary(node: NodeProto) -> TreeSummary:
    """Trees, nodes and leaves of one ai.onnx.ml tree ensemble, and what its leaves hold."""
    summary = TreeSummary(op=node.op_type)
    if node.op_type == "TreeEnsemble":  # ai.onnx.ml opset 5: leaves listed on their own
        leaf_values = _tensor_values(_attr(node, "leaf_weights"))
        roots = _attr(node, "tree_roots") or []
        summary.trees = len(roots)
        summary.nodes = len(_attr(node, "nodes_featureids") or [])
        summary.leaves = len(leaf_values)
        summary.leaf_weights = len(leaf_values)
        return summary
    modes = [m.decode() if isinstance(m, bytes) else str(m) for m in _attr(node, "nodes_modes") or []]
    tree_ids = list(_attr(node, "nodes_treeids") or [])
    summary.nodes = len(modes)
    summary.trees = len(set(tree_ids))
    summary.leaves = sum(1 for m in modes if m == "LEAF")
    summary.routing = {
        "tree": np.asarray(tree_ids, dtype=np.int64),
        "node": np.asarray(list(_attr(node, "nodes_nodeids") or []), dtype=np.int64),
        "feature": np.asarray(list(_attr(node, "nodes_featureids") or []), dtype=np.int64),
        "value": np.asarray(list(_attr(node, "nodes_values") or []), dtype=np.float32),
        "true": np.asarray(list(_attr(node, "nodes_truenodeids") or []), dtype=np.int64),
        "false": np.asarray(list(_attr(node, "nodes_falsenodeids") or []), dtype=np.int64),
        "mode": np.asarray([_MODES.get(m, -1) for m in modes], dtype=np.int64),
    }
    prefix = "class" if node.op_type == "TreeEnsembleClassifier" else "target"
    leaf_trees = list(_attr(node, f"{prefix}_treeids") or [])
    leaf_nodes = list(_attr(node, f"{prefix}_nodeids") or [])
    targets = list(_attr(node, f"{prefix}_ids") or [])
    weights = list(_attr(node, f"{prefix}_weights") or [])
    if not weights:
        weights = list(_tensor_values(_attr(node, f"{prefix}_weights_as_tensor")))
    summary.leaf_weights = len(weights)
    per_leaf: dict[tuple[int, int], dict[int, float]] = defaultdict(dict)
    for tree, leaf, target, weight in zip(leaf_trees, leaf_nodes, targets, weights, strict=False):
        per_leaf[(int(tree), int(leaf))][int(target)] = float(weight)
    if prefix == "class" and per_leaf:
        classes = len(_attr(node, "classlabels_int64s") or _attr(node, "classlabels_strings") or [])
        summary.pure_leaves = sum(1 for leaf in per_leaf.values() if _pure(leaf, classes))
    sums = [sum(v.values()) for v in per_leaf.values()]
    whole = [w for leaf in per_leaf.values() for w in leaf.values()]
    if sums and all(w >= 0 and float(w).is_integer() for w in whole) and max(sums) > 1:
        summary.min_leaf_count = min(sums)
    return summary


_MODES = {
    "LEAF": 0,
    "BRANCH_LEQ": 1,
    "BRANCH_LT": 2,
    "BRANCH_GTE": 3,
    "BRANCH_GT": 4,
    "BRANCH_EQ": 5,
    "BRANCH_NEQ": 6,
}


def leaf_occupancy(summary: TreeSummary, features: np.ndarray) -> np.ndarray | None:
    """How many of ``features``' rows reach each leaf (leaves reached by none left out).

    The records are routed through the split attributes as data (feature index, threshold,
    comparison, child ids), the way the operator would, but nothing of the model is executed.
    None when the attributes are inconsistent or the ensemble is of the opset-5 form.
    """
    r = summary.routing
    if not r or not len(r["mode"]):
        return None
    n_nodes = len(r["mode"])
    if any(len(r[k]) != n_nodes for k in ("tree", "node", "feature", "value", "true", "false")):
        return None
    if (r["mode"] < 0).any() or r["feature"].max(initial=0) >= features.shape[1] or (r["feature"] < 0).any():
        return None
    x = features.astype(np.float32)
    index = {(int(t), int(n)): i for i, (t, n) in enumerate(zip(r["tree"], r["node"], strict=True))}
    counts: list[int] = []
    for tree in np.unique(r["tree"]):
        root = index.get((int(tree), 0))
        if root is None:
            return None
        child_true = np.asarray([index.get((int(tree), int(c)), -1) for c in r["true"]])
        child_false = np.asarray([index.get((int(tree), int(c)), -1) for c in r["false"]])
        at = np.full(len(x), root, dtype=np.int64)
        for _ in range(n_nodes + 1):
            mode = r["mode"][at]
            active = mode != 0
            if not active.any():
                break
            value = x[np.arange(len(x)), r["feature"][at]]
            threshold = r["value"][at]
            go = np.select(
                [mode == 1, mode == 2, mode == 3, mode == 4, mode == 5, mode == 6],
                [value <= threshold, value < threshold, value >= threshold, value > threshold,
                 value == threshold, value != threshold],
                default=False,
            )  # fmt: skip
            nxt = np.where(go, child_true[at], child_false[at])
            if (nxt[active] < 0).any():
                return None
            at = np.where(active, nxt, at)
        else:
            return None  # a cycle: not a tree
        counts.extend(np.unique(at, return_counts=True)[1].tolist())
    return np.asarray(counts, dtype=np.int64)


def _pure(leaf: dict[int, float], classes: int) -> bool:
    """A leaf that predicts one class with certainty. Binary classifiers from skl2onnx store one
    weight per leaf (the positive class's probability), so 0 and 1 are both certain."""
    values = list(leaf.values())
    if classes == 2 and len(values) == 1:
        return values[0] in (0.0, 1.0)
    nonzero = [v for v in values if v != 0.0]
    return len(nonzero) == 1


def _tensor_values(tensor: TensorProto | None) -> np.ndarray:
    if tensor is None:
        return np.zeros(0)
    try:
        return np.asarray(onnx.numpy_helper.to_array(tensor)).ravel()
    except (ValueError, TypeError):
        return np.zeros(0)


def _texts(model: ModelProto) -> Iterator[str]:
    """The strings a job controls: metadata, doc strings, producer, graph/node/value names."""
    yield from (model.producer_name, model.producer_version, model.domain, model.doc_string)
    for prop in model.metadata_props:
        yield f"{prop.key}: {prop.value}"
    for graph in _graphs(model.graph):
        yield from (graph.name, graph.doc_string)
        for v in [*graph.input, *graph.output, *graph.value_info]:
            yield from (v.name, v.doc_string)
        for t in graph.initializer:
            yield from (t.name, t.doc_string)
        for node in graph.node:
            yield from (node.name, node.doc_string)
            for attr in node.attribute:
                if attr.type == AttributeProto.STRING:
                    yield attr.s.decode("utf-8", "replace")
                elif attr.type == AttributeProto.STRINGS:
                    yield from (s.decode("utf-8", "replace") for s in attr.strings)
    for t in _tensors(model):
        if t.data_type == TensorProto.STRING:
            yield from (s.decode("utf-8", "replace") for s in t.string_data)


def _external(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data) > 0


def inspect_onnx(data: bytes) -> OnnxReport:
    """Parse and describe an ONNX model; `OnnxRefused` when it is malformed or not self-contained."""
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise OnnxRefused(
            "the file is not a valid ONNX model: its protobuf cannot be decoded", str(exc)
        ) from exc
    if not model.HasField("graph") or model.ir_version <= 0:
        raise OnnxRefused("the file decodes as protobuf but is not an ONNX model (no graph or IR version)")
    tensors = list(_tensors(model))
    external = [t.name for t in tensors if _external(t)]
    if external:
        raise OnnxRefused(
            f"{plural.count(len(external), 'weight tensor')} "
            f"{plural.agree(len(external), 'is', 'are')} stored in external files outside this model "
            "file: the file under review is not the whole model, and the references are paths "
            "the job chose",
            ", ".join(external[:10]),
        )
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise OnnxRefused(
            "the ONNX model fails the ONNX checker (its graph is not well formed), so what it "
            "computes cannot be established",
            str(exc),
        ) from exc
    report = OnnxReport(ir_version=int(model.ir_version), producer=model.producer_name)
    report.opsets = {
        (o.domain or "ai.onnx"): int(o.version) for o in model.opset_import if o.domain in STANDARD_DOMAINS
    }
    report.metadata = {p.key: p.value for p in model.metadata_props}
    sizes: list[tuple[str, list[int]]] = []
    for t in tensors:
        count = int(np.prod(t.dims)) if len(t.dims) else 1
        report.parameters += count
        report.dtypes[_dtype_name(t.data_type)] += 1
        sizes.append((t.name, [int(d) for d in t.dims]))
    report.initializers = sum(len(g.initializer) for g in _graphs(model.graph))
    report.largest = sorted(sizes, key=lambda s: -int(np.prod(s[1] or [1])))[:5]
    for graph in _graphs(model.graph):
        for node in graph.node:
            if node.domain not in STANDARD_DOMAINS:
                # Custom names are the job's text: counted here, shown to reviewers only.
                report.custom_domains.append(node.domain)
                report.operators["(custom operator)"] += 1
            else:
                report.operators[f"{node.domain}:{node.op_type}" if node.domain else node.op_type] += 1
            if node.domain == ML_DOMAIN and node.op_type in TREE_OPS:
                tree = _tree_summary(node)
                report.trees.append(tree)
                report.parameters += tree.nodes + tree.leaf_weights
                labels = _attr(node, "classlabels_int64s") or _attr(node, "classlabels_strings")
                if labels and not report.class_labels:
                    report.class_labels = [x.decode() if isinstance(x, bytes) else x for x in labels]
            elif node.domain == ML_DOMAIN:
                # LinearClassifier, SVM, ...: their weights are float attributes, not initializers
                report.parameters += sum(
                    len(a.floats) for a in node.attribute if a.type == AttributeProto.FLOATS
                )
    report.inputs = [{"name": v.name, **_type_of(v.type)} for v in model.graph.input]
    report.outputs = [{"name": v.name, **_type_of(v.type)} for v in model.graph.output]
    report.texts = [t for t in _texts(model) if t][:MAX_TEXTS]
    return report
