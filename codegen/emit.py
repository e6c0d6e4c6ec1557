"""C emission: fills the jinja2 templates with the graph's constants, the plan's offsets and the op list.

Generation is deterministic: the same graph and plan give the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from mcuformer import __version__
from mcuformer.codegen.ir import OP_SIGNATURES, Graph, Op
from mcuformer.codegen.lower import SCHEDULES
from mcuformer.codegen.planner import MemoryPlan

TEMPLATES = Path(__file__).resolve().parent / "templates"
_CTYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t"}
VALUES_PER_LINE = 24


@dataclass(frozen=True)
class ConstView:
    name: str
    symbol: str
    ctype: str
    length: int
    shape: tuple[int, ...]
    lines: list[str]


def const_symbol(name: str) -> str:
    return f"mcf_{name}"


def _const_view(name: str, array: np.ndarray) -> ConstView:
    if array.dtype not in _CTYPES:
        raise TypeError(f"const {name} has unsupported dtype {array.dtype}")
    flat = array.reshape(-1).tolist()
    lines = [" ".join(f"{v}," for v in flat[i : i + VALUES_PER_LINE]) for i in range(0, len(flat), VALUES_PER_LINE)]
    return ConstView(name, const_symbol(name), _CTYPES[array.dtype], len(flat), tuple(array.shape), lines)


def model_hash(graph: Graph) -> str:
    """Identifies the model on the device: a digest of every constant and every op."""
    digest = hashlib.sha256()
    for name in sorted(graph.consts):
        digest.update(name.encode())
        digest.update(graph.consts[name].array.tobytes())
    for op in graph.ops:
        digest.update(repr((op.name, op.kind, op.inputs, op.output, sorted(op.attrs.items()))).encode())
    return digest.hexdigest()[:16]


def _op_view(graph: Graph, plan: MemoryPlan, op: Op) -> dict[str, Any]:
    def operand(name: str) -> str:
        if name in graph.consts:
            return const_symbol(name)
        return f"ARENA({plan.tensor_offsets[name]})"

    shape = graph.shape
    dims: tuple[int, ...] = ()
    if op.kind == "linear":
        x, w = shape(op.inputs[0]), shape(op.inputs[1])
        dims = (int(np.prod(x[:-1])) if len(x) > 1 else 1, w[1], w[0])
    elif op.kind in ("patch_embed", "patch_embed_rows", "patch_embed_stream"):
        h, w_, c = shape(op.inputs[0])
        dims = (h, w_, c, op.attrs["patch"], shape(op.inputs[1])[0])
    elif op.kind in ("layernorm", "mean_pool"):
        x = shape(op.inputs[0])
        dims = (int(np.prod(x[:-1])) if len(x) > 1 else 1, x[-1])
    elif op.kind == "attention":
        tokens, channels = shape(op.inputs[0])
        dims = (tokens, channels, op.attrs["heads"])
    operands = dict(zip((r.lstrip("?$") for r in OP_SIGNATURES[op.kind]), op.inputs, strict=True))
    layers: dict[str, dict[str, Any]] = {}
    for role, name in operands.items():
        if "." in role:
            layer, part = role.split(".")
            layers.setdefault(layer, {"present": bool(name)})[part] = operand(name) if name else "NULL"
    for key, value in op.attrs.items():
        if "." in key:
            layer, field = key.split(".")
            layers.setdefault(layer, {"present": True})[field] = value
    if op.kind in ("attention_block", "attention_block_heads"):
        tokens, channels = shape(op.inputs[0])
        rank = lambda v: shape(v)[0] if v else 0  # noqa: E731
        dims = (tokens, channels, op.attrs["heads"], rank(operands["qkv_v.weight"]), rank(operands["proj_v.weight"]))
    elif op.kind == "mlp_block":
        tokens, channels = shape(op.inputs[0])
        rank = lambda v: shape(v)[0] if v else 0  # noqa: E731
        dims = (tokens, channels, shape(operands["fc1_u.weight"])[0], rank(operands["fc1_v.weight"]),
                rank(operands["fc2_v.weight"]))  # fmt: skip
    # The kernel's own scratch (the last scratch operand): exactly its _get_buffer_size, except that the naive
    # schedules' attention reserves the whole score matrix on top of the row the kernel needs.
    scratch_bytes = graph.tensors[op.scratch[-1]].nbytes if op.scratch else 0
    full_scores = op.kind == "attention" and bool(SCHEDULES[graph.meta.get("schedule", "fused")].full_scores)
    return {
        "name": op.name,
        "kind": op.kind,
        "scratch_bytes": scratch_bytes,
        "scratch_check": ">" if full_scores else "!=",
        "layers": layers,
        "attrs": op.attrs,
        "dims": dims,
        "args": [operand(n) if n else "NULL" for n in op.inputs],
        "out": operand(op.output),
        "scratch": [operand(s) for s in op.scratch],
        "size": graph.tensors[op.output].nbytes,
    }


def render(graph: Graph, plan: MemoryPlan) -> dict[str, str]:
    """File name -> contents of the generated C for one graph and its plan."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    stream_rows = int(graph.meta.get("stream_rows", 0))
    input_shape = tuple(graph.meta["image_shape"]) if stream_rows else graph.shape(graph.input)
    context = {
        "version": __version__,
        "name": graph.name,
        "model_hash": model_hash(graph),
        "input_shape": input_shape,
        "input_bytes": int(np.prod(input_shape)),
        "stream_rows": stream_rows,  # 0: the whole image at once; else patch rows arriving one by one
        "stream_row_bytes": int(np.prod(graph.shape(graph.input))) if stream_rows else 0,
        "num_classes": graph.shape(graph.output)[-1],
        "arena_bytes": plan.arena_bytes,
        "input_offset": plan.tensor_offsets[graph.input],
        "output_offset": plan.tensor_offsets[graph.output],
        "logits_scale": graph.meta.get("logits_scale", 0.0),
        "logits_zero_point": graph.meta.get("logits_zero_point", 0),
        "consts": [_const_view(name, c.array) for name, c in sorted(graph.consts.items())],
        "ops": [_op_view(graph, plan, op) for op in graph.ops],
    }
    return {
        out: env.get_template(f"{out}.j2").render(**context)
        for out in ("mcf_model.h", "mcf_model.c", "mcf_weights.h", "mcf_weights.c")
    }


def write_sources(graph: Graph, plan: MemoryPlan, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render(graph, plan).items():
        path = out_dir / name
        path.write_text(text)
        paths.append(path)
    return paths
