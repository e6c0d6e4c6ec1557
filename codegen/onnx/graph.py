"""An ONNX model read for pattern matching: static shapes (batch 1), constants folded, QDQ pairs collapsed.

The model runs once in onnx's reference evaluator on a probe image: every tensor that does not depend on the
input (weights, shape arithmetic, Expand-ed class tokens, dequantized weights) then has its value, so the
patterns see constants instead of shape plumbing. Layout ops are also run on index arrays ("probes") to learn
which channel and token of one tensor lands where in another, whatever Reshape/Transpose/Split form the
exporter chose.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

from mcuformer.codegen.onnx.errors import SUPPORTED_OPS, MatchError, OnnxImportError, unsupported_op

# Ops that only move values around: channels and tokens can be traced through them with an index probe.
LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Split", "Slice", "Gather",
                        "Identity", "Dropout"})  # fmt: skip
SHAPE_OPS = frozenset({"Shape", "Size"})  # their value is static once the input shape is
PROBE_SEED = 0
QDQ_OPSET = 19


@dataclass
class OnnxGraph:
    model: onnx.ModelProto
    input: str
    input_shape: tuple[int, ...]
    output: str
    nodes: list[Any]  # NodeProto, QDQ pairs on activations removed, topologically ordered
    values: dict[str, np.ndarray]  # every tensor's value for the probe image (constants: their only value)
    dynamic: set[str]  # tensors that depend on the input image
    qparams: dict[str, tuple[float, int]]  # activations quantized by a QDQ pair: (scale, zero point)
    metadata: dict[str, str]
    opset: int
    producer: dict[str, Any] = field(default_factory=dict)
    consumers: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        for node in self.nodes:
            for out in node.output:
                self.producer[out] = node
            for name in node.input:
                self.consumers[name].append(node)

    # Queries ----------------------------------------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return name not in self.dynamic and name in self.values

    def const(self, name: str) -> np.ndarray | None:
        return self.values[name] if self.is_const(name) else None

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in np.shape(self.values[name]))

    def make(self, name: str) -> Any | None:
        """The node producing a tensor (None for the graph input and initializers)."""
        return self.producer.get(name)

    def dynamic_inputs(self, node: Any) -> list[str]:
        return [name for name in node.input if name in self.dynamic]

    def split_const(self, node: Any) -> tuple[str, np.ndarray]:
        """(dynamic input, constant input) of a binary node with exactly one of each."""
        dyn = self.dynamic_inputs(node)
        consts = [name for name in node.input if name and name not in self.dynamic]
        if len(dyn) != 1 or len(consts) != 1:
            raise MatchError(node, "expected one input from the image and one constant")
        return dyn[0], self.values[consts[0]]

    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def skip_layout_back(self, name: str) -> tuple[str, list[Any]]:
        """Walk back through layout ops: (first tensor not made by one, the layout nodes in forward order)."""
        path: list[Any] = []
        node = self.make(name)
        while node is not None and node.op_type in LAYOUT_OPS and len(self.dynamic_inputs(node)) == 1:
            path.append(node)
            name = self.dynamic_inputs(node)[0]
            node = self.make(name)
        return name, path[::-1]

    # Evaluation -------------------------------------------------------------------------------------------
    def run_node(self, node: Any, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        names = [n for n in node.input if n]
        vi = helper.make_empty_tensor_value_info
        graph = helper.make_graph([node], "node", [vi(n) for n in names], [vi(n) for n in node.output if n])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        feeds = {n: v for n, v in zip(node.input, inputs, strict=True) if n}
        return list(ReferenceEvaluator(model).run(None, feeds))

    def run_path(
        self, start: str, value: np.ndarray, nodes: list[Any], passthrough: frozenset[str] = frozenset()
    ) -> dict[str, np.ndarray]:
        """Run `nodes` (forward order) with `start` set to `value`; other inputs are constants or earlier outputs.

        Ops in `passthrough` (scalar scales on an index probe) forward their dynamic input unchanged.
        """
        env = {start: value}
        for node in nodes:
            if node.op_type in passthrough:
                env[node.output[0]] = env[next(n for n in node.input if n in env)]
                continue
            inputs = [env.get(n, self.values.get(n)) if n else None for n in node.input]
            for out, result in zip(node.output, self.run_node(node, inputs), strict=False):
                env[out] = result
        return env

    def region(self, start: str, end: str) -> list[Any]:
        """The nodes on some path from tensor `start` to tensor `end`, in topological order."""
        ancestors: set[int] = set()
        stack = [end]
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen or name == start:
                continue
            seen.add(name)
            node = self.make(name)
            if node is None:
                continue
            ancestors.add(id(node))
            stack.extend(n for n in node.input if n in self.dynamic)
        descendants: set[int] = set()
        frontier = {start}
        for node in self.nodes:  # topological order: one forward sweep finds every descendant
            if any(n in frontier for n in node.input):
                descendants.add(id(node))
                frontier.update(node.output)
        return [n for n in self.nodes if id(n) in ancestors and id(n) in descendants]

    def is_closed(self, start: str, nodes: list[Any]) -> bool:
        """Whether every image-dependent input of `nodes` is `start` or made inside `nodes`."""
        made = {out for node in nodes for out in node.output} | {start}
        return all(n in made for node in nodes for n in self.dynamic_inputs(node))


def _fix_batch(model: onnx.ModelProto, name: str) -> tuple[int, ...]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim in dims:
        if not dim.HasField("dim_value"):
            dim.Clear()
            dim.dim_value = 1  # the batch (or any free) dimension: the device runs one image at a time
    shape = tuple(int(d.dim_value) for d in dims)
    if len(shape) != 4 or shape[0] != 1 or shape[2] != shape[3]:
        raise OnnxImportError(f"ONNX input {name!r} has shape {list(shape)}; supported: one square image "
                              "[batch, channels, size, size]")  # fmt: skip
    return shape


def _collapse_qdq(
    nodes: list[Any], dynamic_ok: set[str], values: dict[str, np.ndarray]
) -> tuple[list[Any], dict[str, tuple[float, int]]]:
    """Drop QuantizeLinear -> DequantizeLinear pairs on activations, recording their (scale, zero point)."""
    producer = {out: node for node in nodes for out in node.output}
    rename: dict[str, str] = {}
    qparams: dict[str, tuple[float, int]] = {}
    dropped: set[int] = set()
    for node in nodes:
        if node.op_type != "DequantizeLinear":
            continue
        q = producer.get(node.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in dynamic_ok:
            continue
        scale = np.asarray(values[q.input[1]], np.float64)
        zero = np.asarray(values[q.input[2]]) if len(q.input) > 2 and q.input[2] else np.zeros(1, np.int8)
        if scale.size != 1 or zero.size != 1 or zero.dtype != np.int8:
            raise OnnxImportError(f"node {q.name or q.output[0]} (QuantizeLinear) is not supported: activations "
                                  "must be quantized per tensor to int8; supported: per-tensor int8 QDQ")  # fmt: skip
        qparams[q.input[0]] = (float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0]))
        rename[node.output[0]] = q.input[0]
        dropped.update((id(node), id(q)))
    kept = []
    for node in nodes:
        if id(node) in dropped:
            continue
        if any(n in rename for n in node.input):
            new = onnx.NodeProto()
            new.CopyFrom(node)
            del new.input[:]
            new.input.extend(rename.get(n, n) for n in node.input)
            node = new
        kept.append(node)
    return kept, qparams


def _drop_identities(nodes: list[Any], output: str) -> tuple[list[Any], str]:
    """Remove Identity and (inference) Dropout nodes, reading their input instead; returns the new output name."""
    rename = {n.output[0]: n.input[0] for n in nodes if n.op_type in ("Identity", "Dropout")}

    def source(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    kept = []
    for node in nodes:
        if node.op_type in ("Identity", "Dropout"):
            continue
        if any(n in rename for n in node.input):
            new = onnx.NodeProto()
            new.CopyFrom(node)
            del new.input[:]
            new.input.extend(source(n) for n in node.input)
            node = new
        kept.append(node)
    return kept, source(output)


def load_graph(path: str | Path) -> OnnxGraph:
    """Read an ONNX file and prepare it for matching (see the module docstring)."""
    try:
        model = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError, OSError, ... : all mean "not a readable model"
        raise OnnxImportError(f"cannot read ONNX model {path}: {str(err).splitlines()[0][:160]}") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise OnnxImportError(f"{path} has {len(inputs)} inputs and {len(model.graph.output)} outputs; "
                              "supported: one image input and one logits output")  # fmt: skip
    del model.graph.input[:]
    model.graph.input.extend(inputs)  # initializers listed as inputs (old exporters) are plain constants
    name = inputs[0].name
    shape = _fix_batch(model, name)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < QDQ_OPSET and any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        # onnx's reference evaluator implements Q/DQ from opset 19; their int8 semantics are the same before.
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = opset = QDQ_OPSET
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            raise unsupported_op(node)
    probe = np.random.default_rng(PROBE_SEED).random(shape, dtype=np.float32)
    try:
        values = dict(ReferenceEvaluator(model).run(None, {name: probe}, intermediate=True))
    except Exception as err:  # the reference evaluator's errors are the model's errors
        raise OnnxImportError(
            f"{path} does not run in onnx's reference evaluator: {str(err).splitlines()[0][:160]}"
        ) from None
    nodes = list(model.graph.node)
    dynamic = {name}
    for node in nodes:
        if node.op_type not in SHAPE_OPS and any(n in dynamic for n in node.input):
            dynamic.update(o for o in node.output if o)
    nodes, qparams = _collapse_qdq(nodes, dynamic, values)
    nodes = [n for n in nodes if any(o in dynamic for o in n.output)]  # constants are folded into `values`
    nodes, output = _drop_identities(nodes, model.graph.output[0].name)
    metadata = {p.key: p.value for p in model.metadata_props}
    return OnnxGraph(model, name, shape, output, nodes, values, dynamic, qparams, metadata,
                     opset)  # fmt: skip
