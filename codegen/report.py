"""The memory report: SRAM (arena + stack + runtime statics) and flash (constants by kind + code), per op."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mcuformer.boards import Board
from mcuformer.codegen.code_size import code_bytes_estimate
from mcuformer.codegen.cost_model import MODEL_FILE as COST_MODEL_FILE
from mcuformer.codegen.cost_model import load_cost_model
from mcuformer.codegen.ir import Graph, Op
from mcuformer.codegen.layout import is_widened
from mcuformer.codegen.ops import OPS, graph_macs, op_dims, operand_map
from mcuformer.codegen.planner import MemoryPlan
from mcuformer.codegen.scratch import ONE_TOKEN, patch_row_blocks
from mcuformer.errors import BudgetError

STACK_RESERVE_BYTES = 4096  # stack the firmware reserves (the linker script uses the same number)
RUNTIME_STATIC_BYTES = 1024  # runtime statics outside the arena: serial buffers, counters
PROFILE_BYTES_PER_OP = 4  # the firmware keeps one counter per op for the PROFILE message


def runtime_static_bytes(num_ops: int) -> int:
    return RUNTIME_STATIC_BYTES + PROFILE_BYTES_PER_OP * num_ops


_FLASH_KIND = {"weight": "weights", "bias": "biases", "mult": "requant", "shift": "requant",
               "table": "tables", "exp_table": "tables", "gamma": "norm", "beta": "norm"}  # fmt: skip


@dataclass(frozen=True)
class OpRow:
    index: int
    name: str
    kind: str
    macs: int
    live_bytes: int
    live_buffers: list[str]
    widened: list[str]  # the op's linears whose weights are widened to int16 (fused ops; codegen.layout)
    variant: str = ""  # the kernel variants the op runs, as the op table shows them (op_variant)


@dataclass(frozen=True)
class MemoryReport:
    model: str
    board: str
    arena_bytes: int
    stack_bytes: int
    runtime_static_bytes: int
    sram_bytes: int
    sram_budget: int
    flash_by_kind: dict[str, int]
    code_bytes: int
    flash_bytes: int
    flash_budget: int
    peak_op: str
    peak_live_bytes: int
    macs: int  # multiply-accumulates of one inference (the op table's count)
    # Instructions of one inference predicted by the cost model for the board's kernels, and that time at the
    # board's clock and assumed cycles per instruction (None for op kinds the cost model was not calibrated on).
    predicted_instructions: int | None
    predicted_ms: float | None
    predicted_margin: float  # the cost model's largest held-out error: a limit must hold with it
    ops: list[OpRow]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def write(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(self.flash_by_kind.items()))
        sram_pct, flash_pct = 100 * self.sram_bytes / self.sram_budget, 100 * self.flash_bytes / self.flash_budget
        return "\n".join([
            f"model {self.model} on {self.board}",
            f"  SRAM  {self.sram_bytes:>9,} B of {self.sram_budget:,} ({sram_pct:.1f}%): arena {self.arena_bytes:,}"
            f" + stack {self.stack_bytes:,} + runtime {self.runtime_static_bytes:,}",
            f"  flash {self.flash_bytes:>9,} B of {self.flash_budget:,} ({flash_pct:.1f}%): {kinds},"
            f" code ~{self.code_bytes:,}",
            f"  peak  {self.peak_live_bytes:,} B live at op {self.peak_op}",
            f"  work  {self.macs:,} MACs"
            + (f", ~{self.predicted_instructions:,} instructions predicted (~{self.predicted_ms:.1f} ms at the "
               "board's clock and assumed cycles per instruction)" if self.predicted_ms is not None else ""),
        ])  # fmt: skip

    def op_table(self) -> str:
        """One line per op: its kernel and the variants the planner chose for it (op_variant), MACs and the
        buffers live while it runs."""
        kind_width = max((len(row.kind) for row in self.ops), default=4)
        variant = {row.index: row.variant or "-" for row in self.ops}
        variant_width = max((len(v) for v in variant.values()), default=7)
        lines = [f"{'#':>3}  {'op':<18} {'kind':<{kind_width}}  {'variant':<{variant_width}} {'MACs':>10} "
                 f"{'live B':>8}  live buffers"]  # fmt: skip
        for row in self.ops:
            lines.append(f"{row.index:>3}  {row.name:<18} {row.kind:<{kind_width}}  "
                         f"{variant[row.index]:<{variant_width}} {row.macs:>10,} {row.live_bytes:>8,}  "
                         + " ".join(row.live_buffers))  # fmt: skip
        return "\n".join(lines)


def flash_by_kind(graph: Graph) -> dict[str, int]:
    kinds: dict[str, str] = {}
    for op in graph.ops:
        for role, name in zip(OPS[op.kind].roles, op.inputs, strict=True):
            if name in graph.consts:
                kinds.setdefault(name, _FLASH_KIND.get(role.lstrip("?$").rsplit(".", 1)[-1], "embeddings"))
    totals: dict[str, int] = {}
    for name, kind in kinds.items():
        totals[kind] = totals.get(kind, 0) + graph.consts[name].nbytes
    return totals


def widened_linears(graph: Graph, op: Op) -> list[str]:
    """The op's linears (by role: q, fc1_u, ...) whose weights are widened to int16."""
    weights = {role: name for role, name in operand_map(op).items() if role.endswith(".weight") and name}
    return [role.removesuffix(".weight") for role, name in weights.items() if is_widened(graph.consts[name].array)]


def op_variant(graph: Graph, op: Op, widened: list[str]) -> str:
    """The kernel variants an op runs beyond its kind, for the op table: a fused op one token at a time, the
    patch-row op's patches in token blocks or in pairs, its `widened` linears (int16 weights)."""
    dims = op_dims(graph, op)
    parts = []
    if op.kind == "patch_embed_rows":
        parts.append("4-patch blocks" if patch_row_blocks(dims) else "patch pairs")
    if OPS[op.kind].in_place_block and dims["block_tokens"] == ONE_TOKEN:
        parts.append("one token")
    if widened:
        parts.append("int16 " + ",".join(widened))
    return "; ".join(parts)


def memory_report(graph: Graph, plan: MemoryPlan, board: Board) -> MemoryReport:
    by_kind = flash_by_kind(graph)
    code = code_bytes_estimate(graph, board.kernels)
    peak = plan.peak_op
    macs = graph_macs(graph)
    cost_model = load_cost_model(board.kernels) if COST_MODEL_FILE.is_file() else None
    instructions = cost_model.instructions(graph) if cost_model and cost_model.covers(graph) else None
    rows = []
    for i, op in enumerate(graph.ops):
        widened = widened_linears(graph, op)
        live = [b.name for b in plan.live_at(i)]
        rows.append(OpRow(i, op.name, op.kind, macs[i], plan.live_bytes[i], live, widened,
                          op_variant(graph, op, widened)))  # fmt: skip
    return MemoryReport(
        model=graph.name,
        board=board.name,
        arena_bytes=plan.arena_bytes,
        stack_bytes=STACK_RESERVE_BYTES,
        runtime_static_bytes=runtime_static_bytes(len(graph.ops)),
        sram_bytes=plan.arena_bytes + STACK_RESERVE_BYTES + runtime_static_bytes(len(graph.ops)),
        sram_budget=board.sram_bytes,
        flash_by_kind=by_kind,
        code_bytes=code,
        flash_bytes=sum(by_kind.values()) + code,
        flash_budget=board.flash_bytes,
        peak_op=graph.ops[peak].name,
        peak_live_bytes=plan.live_bytes[peak],
        macs=sum(macs),
        predicted_instructions=instructions,
        predicted_ms=None if instructions is None else 1000 * board.seconds(instructions),
        predicted_margin=cost_model.margin if cost_model else 0.0,
        ops=rows,
    )


def check_budget(report: MemoryReport) -> None:
    if report.sram_bytes > report.sram_budget:
        raise BudgetError(
            f"model {report.model} needs {report.sram_bytes:,} B SRAM (arena {report.arena_bytes:,} + stack "
            f"{report.stack_bytes:,} + runtime {report.runtime_static_bytes:,}) but {report.board} has "
            f"{report.sram_budget:,} B, over by {report.sram_bytes - report.sram_budget:,} B; the peak "
            f"({report.peak_live_bytes:,} B live) is set by op {report.peak_op}"
        )
    if report.flash_bytes > report.flash_budget:
        raise BudgetError(
            f"model {report.model} needs {report.flash_bytes:,} B flash but {report.board} has "
            f"{report.flash_budget:,} B, over by {report.flash_bytes - report.flash_budget:,} B: "
            "use a smaller model or lower ranks"
        )
