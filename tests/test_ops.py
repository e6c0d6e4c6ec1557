"""The op table (codegen/ops.py) against what it describes: the C headers, the lowered graphs and an independent
MAC count."""

import math
import random
import re

import pytest
from test_codegen_plan import _random_arch

from mcuformer.boards import load_board
from mcuformer.codegen.compiler import graph_for_arch
from mcuformer.codegen.emit import c_initializer
from mcuformer.codegen.ir import Graph, Op
from mcuformer.codegen.lower import SCHEDULES
from mcuformer.codegen.ops import OPS, Static, graph_macs, kernel_scratch_bytes, op_dims
from mcuformer.codegen.planner import plan_memory
from mcuformer.codegen.report import memory_report
from mcuformer.firmware import KERNELS_DIR

HEADERS = "".join((KERNELS_DIR / "include" / name).read_text() for name in ("mcf_kernels.h", "mcf_fused.h"))


def _struct_fields(ctype: str) -> list[str]:
    """The field names of a typedef'd struct in the kernel headers, in order."""
    body = re.search(r"typedef struct \{([^}]*)\}\s*" + ctype + ";", HEADERS)
    assert body, f"{ctype} is not a struct in mcf_kernels.h or mcf_fused.h"
    text = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.DOTALL)
    return [name for decl in text.split(";") if decl.strip() for name in re.findall(r"\**(\w+)\s*(?:,|$)", decl)]


def _prototype_arity(symbol: str) -> int:
    match = re.search(r"mcf_status " + symbol + r"\(([^)]*)\)", HEADERS)
    assert match, f"{symbol} has no prototype"
    return match.group(1).count(",") + 1


@pytest.mark.parametrize("kind", sorted(OPS))
def test_each_row_matches_the_kernel_headers(kind: str) -> None:
    row = OPS[kind]
    assert _prototype_arity(row.kernel) == len(row.args), f"{row.kernel} takes another number of arguments"
    roles = {role.lstrip("?$") for role in row.roles}
    suffixes = {struct.suffix for struct in row.structs}
    known = roles | {"out", "out_row", "size"} | {f"&{suffix}" for suffix in suffixes}
    for arg in row.args:
        assert arg in known or re.fullmatch(r"scratch\d", arg), f"{kind}: argument {arg!r} names nothing"
    for struct in row.structs:
        assert _struct_fields(struct.ctype), struct.ctype
    if row.scratch:
        assert f"{row.kernel}_get_buffer_size" in HEADERS


def _lowered(seed: int, schedule: str) -> Graph:
    return graph_for_arch(_random_arch(random.Random(seed)), "m", schedule)


def _independent_macs(graph: Graph, op: Op) -> int:
    """Rows x weight elements of every weight operand, + 2 N^2 d for attention (scores and context)."""
    weights = sum(int(graph.consts[n].array.size) for r, n in zip(OPS[op.kind].roles, op.inputs, strict=True)
                  if n and r.lstrip("?$").split(".")[-1] == "weight")  # fmt: skip
    first = graph.shape(op.inputs[0])
    rows = math.prod(graph.shape(op.output)[:-1]) if op.kind.startswith("patch_embed") else math.prod(first[:-1])
    macs = rows * weights
    if "attention" in op.kind:
        macs += 2 * first[0] ** 2 * first[-1]
    return macs


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_macs_dims_and_scratch_agree_with_the_lowered_graphs(schedule: str) -> None:
    for seed in range(12):
        graph = _lowered(seed, schedule)
        assert graph_macs(graph) == [_independent_macs(graph, op) for op in graph.ops]
        assert memory_report(graph, plan_memory(graph), load_board("stm32f746")).macs == sum(graph_macs(graph))
        for op in graph.ops:
            row = OPS[op.kind]
            dims = op_dims(graph, op)
            if row.dims:
                dims_struct = next(s for s in row.structs if s.suffix == "dims")
                assert list(dims) == _struct_fields(dims_struct.ctype)
            if row.scratch:  # the kernel's own scratch is the last; the naive schedules' attention holds more
                planned = graph.tensors[op.scratch[-1]].nbytes
                needed = kernel_scratch_bytes(graph, op)
                assert planned == needed or (op.kind == "attention" and SCHEDULES[schedule].full_scores)


def test_c_initializer_designates_fields_hoists_statics_and_widens_large_values() -> None:
    statics: list[dict[str, str]] = []
    init = c_initializer({"a": 1, "p": {"eps": 2**40}, "v": Static("mcf_linear_layer", {"w": "mcf_w"})}, "op",
                         statics)  # fmt: skip
    assert init == "{ .a = 1, .p = { .eps = 1099511627776LL }, .v = &op_v }"
    assert statics == [{"ctype": "mcf_linear_layer", "name": "op_v", "init": "{ .w = mcf_w }"}]
