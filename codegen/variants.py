"""The planner's speed-for-memory trade: which attention kernel each fused block runs, and which of the fused
blocks' linears get widened weights.

The kernels offer per block (lower.ATTENTION_KINDS): K and V for all heads; one head's at a time (the least memory
when heads > 2); one head's at a time normalising once per token (fewer instructions; its scratch keeps every
token's normalised input widened and one head's K and V in int16, scratch.attention_block_heads_once_scratch_bytes).
Every option has an exact plan (the planner's arena, the flash of its constants and linked kernels) and predicted
instructions (the board's cost model), so the choice is a small exact optimisation:

- `memory`: the least peak SRAM, as the compiler always planned before (all blocks per head, or all for all
  heads, whichever plans smaller; all heads on a tie); when even that does not fit the SRAM budget, the
  token-block variant that runs every fused op one token at a time (the one-token chain's scratch: less SRAM,
  several times the instructions), which speed mode then takes too;
- `speed`: the fewest predicted instructions whose SRAM and flash fit the budgets, the least SRAM among equals.

Peak SRAM is a maximum over ops, and the ops of one block only see that block's choice beside buffers every
option shares, so for each set of kernels linked (flash: code is linked once per kind) and each SRAM level a
block may reach, the fastest option of every block that stays within that level gives one candidate. Candidates
are tried fastest first through the real lowering and planner, and the first that fits is the plan: what
`compile` emits and what `plan_arch` (the search's constraint) promises, to the byte.

The patch-row op runs its patches in token blocks (Variants.patch_blocks) wherever their scratch does not raise
the arena, in both modes (lower's default); where it would (the patch embedding is the graph's peak), speed mode
takes them when the plan still fits and the cost model predicts fewer instructions.

Speed mode then spends the flash left on widened weights (codegen.layout: int16, twice the bytes, two
instructions fewer per 16 MACs on the DSP kernels). That changes no SRAM, and every linear saves about the same
instructions per byte (tokens / 8 per extra byte; the qkv V factor more in the kernels that run it per head), so
the linears are taken best ratio first, larger first among equals, as long as the flash budget holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

from mcuformer.boards import Board
from mcuformer.codegen.code_size import kernel_defines, widened_code_bytes
from mcuformer.codegen.cost_model import MODEL_FILE as COST_MODEL_FILE
from mcuformer.codegen.cost_model import WIDENED_SAVING, linear_groups, load_cost_model
from mcuformer.codegen.ir import Graph
from mcuformer.codegen.lower import ATTENTION_KINDS, DEFAULT_VARIANTS, SCHEDULES, Variants, lower
from mcuformer.codegen.planner import MemoryPlan, plan_memory
from mcuformer.codegen.report import MemoryReport, memory_report
from mcuformer.codegen.scratch import BLOCK_MIN_TOKENS, BLOCK_TOKENS, ONE_TOKEN
from mcuformer.errors import McuformerError
from mcuformer.quant.qmodel import QViT

OPTIMIZE = ("speed", "memory")
MAX_TRIES = 8  # candidates planned for real before settling for the memory plan (fragmentation is rare)


@dataclass(frozen=True)
class Planned:
    """One lowering with its plan and report."""

    graph: Graph
    plan: MemoryPlan
    report: MemoryReport

    @property
    def variants(self) -> Variants:
        return Variants.of(self.graph.meta)

    @property
    def attention(self) -> tuple[str, ...]:
        return tuple(self.graph.meta.get("attention", ()))

    @property
    def widened(self) -> tuple[str, ...]:
        return tuple(self.graph.meta.get("widened", ()))

    def fits(self, sram_budget: int, flash_budget: int) -> bool:
        return self.report.sram_bytes <= sram_budget and self.report.flash_bytes <= flash_budget


@dataclass(frozen=True)
class Choice:
    """The chosen plan and the memory plan it was weighed against (the trade table's two rows)."""

    chosen: Planned
    memory: Planned
    optimize: str
    sram_budget: int
    flash_budget: int

    def with_report_budgets(self) -> Choice:
        """The same plans, their reports measured against this choice's budgets (not the board's)."""

        def rebudget(p: Planned) -> Planned:
            report = replace(p.report, sram_budget=self.sram_budget, flash_budget=self.flash_budget)
            return Planned(p.graph, p.plan, report)

        memory = rebudget(self.memory)
        chosen = memory if self.chosen is self.memory else rebudget(self.chosen)
        return replace(self, chosen=chosen, memory=memory)


def planned(model: QViT, name: str, schedule: str, board: Board, variants: Variants = DEFAULT_VARIANTS) -> Planned:
    """One lowering with the given kernel variants, its plan and its report."""
    graph = lower(model, name, schedule, variants)
    plan = plan_memory(graph)
    return Planned(graph, plan, memory_report(graph, plan, board))


def choose_plan(
    model: QViT,
    name: str,
    board: Board,
    schedule: str = "fused",
    optimize: str = "speed",
    sram_budget: int | None = None,
    flash_budget: int | None = None,
) -> Choice:
    """The plan `compile` emits for `model` on `board` (budgets default to the board's)."""
    if optimize not in OPTIMIZE:
        raise McuformerError(f"unknown --optimize {optimize!r}: use speed or memory")
    sram_budget = board.sram_bytes if sram_budget is None else sram_budget
    flash_budget = board.flash_bytes if flash_budget is None else flash_budget
    if sram_budget > board.sram_bytes or flash_budget > board.flash_bytes:
        raise McuformerError(f"budgets of {sram_budget:,} B SRAM and {flash_budget:,} B flash exceed the "
                             f"{board.name}'s {board.sram_bytes:,} B and {board.flash_bytes:,} B: give smaller "
                             "ones")  # fmt: skip
    if not SCHEDULES[schedule].fuse_blocks:  # no attention kernel to choose
        only = planned(model, name, schedule, board)
        return Choice(only, only, optimize, sram_budget, flash_budget)
    # The memory plan as `lower` makes it without a choice: the smaller of all heads and per head (all on a tie).
    speed = optimize == "speed" and COST_MODEL_FILE.is_file()
    kinds_to_plan = ATTENTION_KINDS if speed else ATTENTION_KINDS[:2]
    uniform = {kind: planned(model, name, schedule, board, Variants(kind)) for kind in kinds_to_plan}
    memory = min((uniform[k] for k in ATTENTION_KINDS[:2]), key=lambda p: p.plan.arena_bytes)
    if memory.report.sram_bytes > sram_budget:
        memory = one_token(model, name, schedule, board, memory)
    choice = Choice(memory, memory, optimize, sram_budget, flash_budget)
    if not speed or memory.variants.block_tokens == ONE_TOKEN:
        return choice  # one token at a time is the only plan that might fit: nothing to trade
    cost_model = load_cost_model(board.kernels)
    if not all(cost_model.covers(p.graph) for p in uniform.values()):
        return choice  # a kernel the cost model has no data for: nothing to weigh
    first = uniform[ATTENTION_KINDS[0]]
    blocks = [i for i, op in enumerate(first.graph.ops) if op.kind in ATTENTION_KINDS]
    # Per block and kind: the live bytes at its attention op and its instructions; the rest is shared.
    live = {k: [p.plan.live_bytes[i] for i in blocks] for k, p in uniform.items()}
    work = {k: [cost_model.op_instructions(p.graph, p.graph.ops[i]) for i in blocks] for k, p in uniform.items()}
    shared_peak = max((v for i, v in enumerate(first.plan.live_bytes) if i not in blocks), default=0)
    tokens = first.graph.shape(first.graph.ops[blocks[0]].inputs[0])[0] if blocks else 0
    # Normalising once saves nothing where the kernel runs one token at a time.
    offered = ATTENTION_KINDS if tokens >= BLOCK_MIN_TOKENS else ATTENTION_KINDS[:2]
    candidates: dict[tuple[str, ...], float] = {}
    for size in range(1, len(offered) + 1):
        for kinds in combinations(offered, size):
            for level in sorted({shared_peak, *(v for k in kinds for v in live[k])}):
                pick = []
                for b in range(len(blocks)):
                    within = [k for k in kinds if live[k][b] <= level]
                    if not within:
                        break
                    pick.append(min(within, key=lambda k, b=b: (work[k][b], live[k][b])))  # type: ignore[misc]
                else:
                    candidates.setdefault(tuple(pick), sum(work[k][b] for b, k in enumerate(pick)))
    fastest = memory
    for kinds, _ in sorted(candidates.items(), key=lambda item: item[1])[:MAX_TRIES]:
        candidate = (
            uniform[kinds[0]] if len(set(kinds)) == 1 else planned(model, name, schedule, board, Variants(kinds))
        )
        if candidate.fits(sram_budget, flash_budget):
            better = (candidate.report.predicted_instructions or 0) < (memory.report.predicted_instructions or 0)
            fastest = candidate if better else memory
            break
    fastest = patch_blocks(model, name, schedule, board, fastest, sram_budget, flash_budget)
    widened = widen(model, name, schedule, board, fastest, sram_budget, flash_budget)
    return Choice(widened, memory, optimize, sram_budget, flash_budget)


def patch_blocks(model: QViT, name: str, schedule: str, board: Board, plan: Planned, sram_budget: int,
                 flash_budget: int) -> Planned:  # fmt: skip
    """`plan` with the patch rows in token blocks where lowering left them out because they raise the arena, if
    that still fits the budgets and is predicted faster; else `plan`."""
    if plan.variants.patch_blocks is not False:
        return plan
    candidate = planned(model, name, schedule, board, replace(plan.variants, patch_blocks=True))
    faster = (candidate.report.predicted_instructions or 0) < (plan.report.predicted_instructions or 0)
    return candidate if faster and candidate.fits(sram_budget, flash_budget) else plan


def widen(model: QViT, name: str, schedule: str, board: Board, plan: Planned, sram_budget: int,
          flash_budget: int) -> Planned:  # fmt: skip
    """`plan` with as many linears widened as the flash budget holds (the module's docstring), or `plan` itself
    when none fits or the board's kernels gain nothing."""
    if not WIDENED_SAVING.get(board.kernels):
        return plan
    graph = plan.graph
    groups = {layer: g for op in graph.ops for layer, g in linear_groups(graph, op) if g > 0}
    extra = {layer: graph.consts[f"{layer}_w"].nbytes for layer in groups}  # int16 takes twice the int8 bytes
    room = flash_budget - plan.report.flash_bytes - widened_code_bytes(board.kernels, kernel_defines(graph))
    picked = []
    for layer in sorted(groups, key=lambda n: (-groups[n] / extra[n], -extra[n], n)):
        if extra[layer] <= room:
            picked.append(layer)
            room -= extra[layer]
    if not picked:
        return plan
    candidate = planned(model, name, schedule, board, replace(plan.variants, widened=tuple(sorted(picked))))
    return candidate if candidate.fits(sram_budget, flash_budget) else plan


def one_token(model: QViT, name: str, schedule: str, board: Board, memory: Planned) -> Planned:
    """The least-memory plan when the default token blocks do not fit: every fused op one token at a time (the
    block_tokens variant: the one-token chain's scratch, more instructions), the smaller of all heads and per
    head; `memory` where that is no smaller (short sequences run one token at a time anyway)."""
    lean = [
        planned(model, name, schedule, board, Variants(kind, block_tokens=ONE_TOKEN)) for kind in ATTENTION_KINDS[:2]
    ]
    smallest = min(lean, key=lambda p: p.plan.arena_bytes)
    return smallest if smallest.plan.arena_bytes < memory.plan.arena_bytes else memory


def trade_table(choice: Choice) -> str:
    """Memory mode against speed mode: SRAM, flash and predicted instructions, and the budgets' headroom."""
    rows = [("memory", choice.memory)]
    if choice.optimize == "speed":
        rows.append(("speed", choice.chosen))
    lines = [
        "| plan | attention per block | token blocks | widened linears | peak SRAM | flash | predicted instructions "
        "| SRAM headroom | flash headroom |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, plan_row in rows:
        r = plan_row.report
        kinds = ", ".join(k.removeprefix("attention_block").lstrip("_") or "all heads" for k in plan_row.attention)
        linears = sum(1 for op in plan_row.graph.ops for _ in linear_groups(plan_row.graph, op))
        widened = f"{len(plan_row.widened)} of {linears}" if linears else "-"
        instructions = f"{r.predicted_instructions:,}" if r.predicted_instructions is not None else "-"
        mark = " (chosen)" if label == choice.optimize else ""
        blocks = "one token" if plan_row.variants.block_tokens == ONE_TOKEN else f"{BLOCK_TOKENS} tokens"
        lines.append(f"| {label}{mark} | {kinds or '-'} | {blocks} | {widened} | {r.sram_bytes:,} B "
                     f"| {r.flash_bytes:,} B | {instructions} | {choice.sram_budget - r.sram_bytes:,} B "
                     f"| {choice.flash_budget - r.flash_bytes:,} B |")  # fmt: skip
    return "\n".join(lines)
