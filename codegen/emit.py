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
from mcuformer.codegen.ir import Graph, Op
from mcuformer.codegen.layout import is_widened
from mcuformer.codegen.lower import SCHEDULES
from mcuformer.codegen.ops import OPS, Init, Operands, Static, op_dims, operand_map
from mcuformer.codegen.planner import MemoryPlan

TEMPLATES = Path(__file__).resolve().parent / "templates"
_CTYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t"}
VALUES_PER_LINE = 24
LINE_WIDTH = 100  # struct initialisers longer than this get one field per line


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


INT32_RANGE = range(-(2**31), 2**31)


def c_initializer(value: Init, name: str, statics: list[dict[str, str]], top: bool = True) -> str:
    """A C initialiser with designated fields; a Static becomes its own declaration (named after its field).
    A long struct gets one top-level field per line."""
    if isinstance(value, Static):
        statics.append({"ctype": value.ctype, "name": name, "init": c_initializer(value.init, name, statics)})
        return f"&{name}"
    if isinstance(value, dict):
        fields = [f".{key} = {c_initializer(v, f'{name}_{key}', statics, False)}" for key, v in value.items()]
        if top and sum(len(f) + 2 for f in fields) > LINE_WIDTH:
            return "{\n" + "".join(f"    {f},\n" for f in fields) + "}"
        return "{ " + ", ".join(fields) + " }"
    if isinstance(value, int):
        return str(value) if value in INT32_RANGE else f"{value}LL"
    return str(value)


def _op_view(graph: Graph, plan: MemoryPlan, op: Op) -> dict[str, Any]:
    """What the template needs of one op: its struct declarations and its kernel call, from the op table."""
    kind = OPS[op.kind]

    def operand(name: str) -> str:
        if name in graph.consts:
            return const_symbol(name)
        return f"ARENA({plan.tensor_offsets[name]})"

    roles = operand_map(op)
    symbols = {role: operand(name) if name else "NULL" for role, name in roles.items()}
    dims = op_dims(graph, op)
    widened = {role for role, name in roles.items() if name in graph.consts and is_widened(graph.consts[name].array)}
    operands = Operands(op, symbols, dims, widened)
    decls: list[dict[str, str]] = []
    for struct in kind.structs:
        name = f"{op.name}_{struct.suffix}"
        statics: list[dict[str, str]] = []
        init = c_initializer(struct.build(operands), op.name, statics)
        decls += [*statics, {"ctype": struct.ctype, "name": name, "init": init}]
    out = operand(op.output)
    special = {"out": out, "size": str(graph.tensors[op.output].nbytes)}
    if "out_row" in kind.args:  # a streamed strip's tokens go to patch row `row`
        special["out_row"] = f"{out} + row * {dims['width'] // dims['patch'] * dims['out_ch']}"
    special.update({f"scratch{i}": operand(s) for i, s in enumerate(op.scratch)})
    args = [f"&{op.name}_{a[1:]}" if a.startswith("&") else special.get(a) or symbols[a] for a in kind.args]
    # The kernel's own scratch (the last scratch operand) is exactly its _get_buffer_size, except that the naive
    # schedules' attention reserves the whole score matrix on top of the row the kernel needs.
    full_scores = op.kind == "attention" and bool(SCHEDULES[graph.meta.get("schedule", "fused")].full_scores)
    return {
        "name": op.name,
        "kind": op.kind,
        "kernel": kind.kernel,
        "decls": decls,
        "args": args,
        "copy_in": symbols["x"] if kind.in_place_block and symbols["x"] != out else "",
        "size": special["size"],
        "out": out,
        "scratch_bytes": graph.tensors[op.scratch[-1]].nbytes if kind.scratch else 0,
        "scratch_check": ">" if full_scores else "!=",
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
