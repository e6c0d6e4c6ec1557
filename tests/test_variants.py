"""The planner's speed-for-memory trade (codegen/variants.py): which attention kernel each block runs, and which
linears get widened weights.

fmnist-small (49 tokens, 4 heads) offers the trade: per head normalising once per token is faster than per head
normalising per head, for tokens x d more scratch per block; widened weights are faster for twice the weight
flash. The choices are pinned under loose and tight budgets; the device side (arena, SRAM, flash, exact logits) is
in test_schedules_device.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from mcuformer.arch import PRESETS, ArchConfig
from mcuformer.boards import load_board
from mcuformer.codegen.code_size import kernel_defines, widened_code_bytes
from mcuformer.codegen.compiler import Budgets, plan_arch, plan_qmodel
from mcuformer.codegen.cost_model import linear_groups
from mcuformer.codegen.lower import Variants, fused_linears
from mcuformer.codegen.scratch import BLOCKS_DEFAULT, ONE_TOKEN
from mcuformer.codegen.variants import choose_plan, planned, trade_table
from mcuformer.errors import McuformerError
from mcuformer.quant.placeholder import placeholder_qvit

ONCE, HEADS, ALL = "attention_block_heads_once", "attention_block_heads", "attention_block"
BOARD = load_board("stm32f746")


# Four tokens (14x14 pixels, 7x7 patches): the DSP blocks run one token at a time.
SHORT = ArchConfig.uniform(image_size=14, channels=1, patch_size=7, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2,
                           num_classes=10, pool="mean")  # fmt: skip


def _choice(preset: str | ArchConfig, optimize: str = "speed", sram: int | None = None, flash: int | None = None,
            board=BOARD):  # fmt: skip
    arch = PRESETS[preset] if isinstance(preset, str) else preset
    return choose_plan(placeholder_qvit(arch), "m", board, "fused", optimize, sram, flash)


def _weight_bytes(plan, layers) -> int:
    """The int8 bytes of these linears' weights: what widening them adds to the flash."""
    return sum(plan.graph.consts[f"{layer}_w"].array.size for layer in layers)


def _narrow(arch: ArchConfig):
    """The speed plan's kernels with no linear widened."""
    return planned(placeholder_qvit(arch), "m", "fused", BOARD, Variants(_choice(arch).chosen.attention))


def test_memory_mode_is_the_smallest_plan():
    """--optimize memory: the plan the compiler always emitted (K and V per head for 4 heads)."""
    choice = _choice("fmnist-small", "memory")
    assert choice.chosen is choice.memory
    assert choice.chosen.attention == (HEADS,) * PRESETS["fmnist-small"].depth
    smallest = min(choice.chosen.report.sram_bytes, _choice("fmnist-small", "speed").chosen.report.sram_bytes)
    assert choice.chosen.report.sram_bytes == smallest


def test_loose_budget_buys_speed_with_memory():
    """The board's budgets: every block normalises once; more SRAM, fewer predicted instructions."""
    choice = _choice("fmnist-small")
    fast, small = choice.chosen.report, choice.memory.report
    assert choice.chosen.attention == (ONCE,) * PRESETS["fmnist-small"].depth
    assert fast.predicted_instructions < small.predicted_instructions
    assert small.sram_bytes < fast.sram_bytes <= BOARD.sram_bytes
    # The extra SRAM is the once kernel's: every block's normalised input widened (13 blocks of 4 of the 50 tokens x
    # 48 channels x 2 bytes) and one head's K and V as int16 (2 x 50 x 16 x 2 bytes).
    arch = PRESETS["fmnist-small"]
    blocks, head_dim = -(-arch.num_tokens // 4), arch.embed_dim // arch.num_heads[0]
    kept, wide_kv = blocks * 4 * arch.embed_dim * 2, 2 * arch.num_tokens * head_dim * 2
    assert fast.arena_bytes - small.arena_bytes == kept + wide_kv == 13 * 384 + 3200


def test_tight_budget_keeps_the_small_plan():
    """An SRAM budget one byte below the fast plan's: the fastest plan that fits has the memory plan's kernels and
    SRAM (widened weights cost flash only)."""
    fast = _choice("fmnist-small").chosen.report.sram_bytes
    choice = _choice("fmnist-small", sram=fast - 1)
    assert choice.chosen.attention == choice.memory.attention
    assert choice.chosen.report.sram_bytes == choice.memory.report.sram_bytes <= fast - 1
    # Exactly the fast plan's SRAM: it fits again.
    assert _choice("fmnist-small", sram=fast).chosen.attention[0] == ONCE


def test_every_budget_between_gets_a_plan_within_it():
    """From the memory plan's SRAM to the fast plan's, each budget gets a plan that fits it and is never slower
    than the memory plan."""
    small = _choice("fmnist-small", "memory").chosen.report.sram_bytes
    fast = _choice("fmnist-small").chosen.report.sram_bytes
    for budget in range(small, fast + 1, 256):
        choice = _choice("fmnist-small", sram=budget)
        assert choice.chosen.report.sram_bytes <= budget
        assert choice.chosen.report.predicted_instructions <= choice.memory.report.predicted_instructions


def test_short_sequences_never_normalise_once():
    """Fewer than 16 tokens: the DSP kernels run one token at a time, normalising once saves nothing and is never
    offered. K and V for all heads are faster there; the memory plan keeps them per head."""
    speed, memory = _choice(SHORT), _choice(SHORT, "memory")
    assert ONCE not in speed.chosen.attention
    assert memory.chosen.attention == (HEADS, HEADS) and speed.chosen.attention == (ALL, ALL)
    assert speed.chosen.report.predicted_instructions < memory.chosen.report.predicted_instructions
    assert memory.chosen.report.sram_bytes < speed.chosen.report.sram_bytes


def test_plan_arch_promises_what_compile_emits():
    """The search's weightless plan and the compiler's plan of real weights choose alike and match in bytes."""
    arch = PRESETS["fmnist-small"]
    for budgets in (Budgets(), Budgets(sram=_choice("fmnist-small").chosen.report.sram_bytes - 1)):
        report = plan_arch(arch, BOARD, "fused", budgets)
        chosen = plan_qmodel(placeholder_qvit(arch), "m", BOARD, "fused", budgets).chosen
        assert (report.sram_bytes, report.flash_bytes) == (chosen.report.sram_bytes, chosen.report.flash_bytes)
        assert report.sram_budget == (budgets.sram or BOARD.sram_bytes)  # the report measures the given budget


def test_trade_table_names_both_plans_and_the_headroom():
    table = trade_table(_choice("fmnist-small"))
    memory_row, speed_row = table.splitlines()[2:]
    assert memory_row.startswith("| memory |") and speed_row.startswith("| speed (chosen) |")
    assert "heads_once, heads_once, heads_once" in speed_row and "| heads, heads, heads |" in memory_row


def test_budgets_beyond_the_board_are_refused():
    with pytest.raises(McuformerError, match="exceed the stm32f746"):
        _choice("fmnist-small", sram=BOARD.sram_bytes + 1)
    with pytest.raises(McuformerError, match="unknown --optimize"):
        _choice("fmnist-small", "fastest")


def test_plan_command_prints_the_trade(tmp_path, capsys):
    """`mcuformer plan ARCH --sram S`: the op table shows the chosen kernels, the trade table both plans."""
    from mcuformer.cli import main

    fast = _choice("fmnist-small").chosen.report.sram_bytes
    for sram, kind in ((None, ONCE), (fast - 1, HEADS)):
        extra = [] if sram is None else ["--sram", str(sram)]
        assert main(["plan", "fmnist-small", "--plot", str(tmp_path / "p.png"), *extra]) in (0, None)
        out = capsys.readouterr().out
        assert f" {kind} " in out and "| memory |" in out and "| speed (chosen) |" in out
        assert " fc1_u,fc2_u " in out and " q,k,v,proj_u " in out  # the op table's widened linears
        assert " 18 of 18 " in out.split("| speed (chosen) |")[1].splitlines()[0]
        assert ("heads_once" in out.split("| speed (chosen) |")[1].splitlines()[0]) == (kind == ONCE)


def test_loose_flash_widens_every_linear():
    """The board's 1 MB: every fused linear widened, the flash up by exactly their int8 weight bytes, the
    predicted instructions down by the saving counted in the assembly (2 per group of 4 inputs, channel and block
    of 4 tokens), and the memory plan widens nothing."""
    arch = PRESETS["fmnist-small"]
    choice = _choice(arch)
    narrow = _narrow(arch)
    layers = fused_linears(placeholder_qvit(arch))
    assert choice.chosen.widened == tuple(sorted(layers)) and not choice.memory.widened
    assert _choice(arch, flash=narrow.report.flash_bytes).chosen.widened == ()  # no room to widen
    code = widened_code_bytes("dsp", kernel_defines(narrow.graph))  # the widened paths and speed loops
    extra = _weight_bytes(narrow, layers) + code
    assert choice.chosen.report.flash_bytes == narrow.report.flash_bytes + extra
    assert choice.chosen.report.sram_bytes == narrow.report.sram_bytes
    graph = narrow.graph
    groups = sum(g for op in graph.ops for _, g in linear_groups(graph, op))
    # fmnist-small: 13 blocks of 4 tokens, in_ch 48 or 96 (12 or 24 groups); the per-head kernel runs each once.
    assert groups == 13 * arch.depth * (12 * 48 * 4 + 12 * 96 + 24 * 48)
    saved = narrow.report.predicted_instructions - choice.chosen.report.predicted_instructions
    assert abs(saved - 2 * groups) <= 1  # rounding of the two predictions


def test_tight_flash_widens_what_fits():
    """A flash budget between the narrow and the fully widened plan: the widened linears' extra bytes fit the
    room, and every linear left narrow would not."""
    arch = PRESETS["fmnist-small"]
    narrow = _narrow(arch)
    code = widened_code_bytes("dsp", kernel_defines(narrow.graph))
    for room in (0, 2303, 2304, 2896, 2897, 10_000, 25_000):
        choice = _choice(arch, flash=narrow.report.flash_bytes + room)
        widened, chosen = choice.chosen.widened, choice.chosen
        extra = _weight_bytes(narrow, widened) + (code if widened else 0)
        assert extra <= room and chosen.report.flash_bytes == narrow.report.flash_bytes + extra
        left = [layer for layer in fused_linears(placeholder_qvit(arch)) if layer not in widened]
        assert all(_weight_bytes(narrow, [layer]) > room - max(extra, code) for layer in left)
    assert not _choice(arch, flash=narrow.report.flash_bytes + code + 2303).chosen.widened  # the smallest: 48 x 48
    assert len(_choice(arch, flash=narrow.report.flash_bytes + code + 2304).chosen.widened) == 1


def test_nothing_is_widened_where_it_saves_nothing():
    """The portable kernels read either layout at the same cost, and sequences under 16 tokens never reach the
    assembly loop: no widened weights, so no flash spent for nothing."""
    portable = replace(BOARD, kernel_variant="portable")
    assert not _choice("fmnist-small", board=portable).chosen.widened
    assert not _choice(SHORT).chosen.widened


def test_sram_below_the_memory_plan_runs_one_token_at_a_time():
    """An SRAM budget below the memory plan's: both modes fall back to the token-block variant that runs one
    token at a time (the one-token chain's scratch), within the budget, predicted slower, nothing widened. At the
    memory plan's SRAM the default blocks come back."""
    arch = PRESETS["fmnist-small"]
    memory = _choice(arch, "memory").chosen
    below = memory.report.sram_bytes - 1
    for optimize in ("memory", "speed"):
        choice = _choice(arch, optimize, sram=below)
        assert choice.chosen is choice.memory
        assert choice.chosen.variants.block_tokens == ONE_TOKEN and not choice.chosen.widened
        assert choice.chosen.report.sram_bytes <= below
        assert choice.chosen.report.predicted_instructions > memory.report.predicted_instructions
        promised = plan_arch(arch, BOARD, "fused", Budgets(optimize=optimize, sram=below))
        assert (promised.sram_bytes, promised.flash_bytes) == (
            choice.chosen.report.sram_bytes,
            choice.chosen.report.flash_bytes,
        )
    assert _choice(arch, "memory", sram=memory.report.sram_bytes).chosen.variants.block_tokens == BLOCKS_DEFAULT


@pytest.mark.parametrize(("preset", "blocks"), [("fmnist-small", True), ("micro", False)])
def test_patch_rows_take_token_blocks_unless_they_raise_the_arena(preset, blocks):
    """The patch-row op's token blocks hold a widened block of four patches in its scratch (8 bytes a value): the
    lowering takes them where that scratch fits under the graph's peak anyway (fmnist-small: the attention blocks
    peak), not where the patch embedding is the peak (micro: 7 x 7 patches of a 28 x 28 image, 16 channels)."""
    qvit = placeholder_qvit(PRESETS[preset])
    chosen = planned(qvit, "m", "fused", BOARD)
    forced = {b: planned(qvit, "m", "fused", BOARD, Variants(patch_blocks=b)) for b in (True, False)}
    assert chosen.variants.patch_blocks is blocks
    assert chosen.plan.arena_bytes == min(p.plan.arena_bytes for p in forced.values())
    assert (forced[True].plan.arena_bytes > forced[False].plan.arena_bytes) is not blocks
    patch = next(op for op in chosen.graph.ops if op.kind == "patch_embed_rows")
    assert patch.attrs["blocks"] == (1 if blocks else 0)
    rows = {b: p.graph.tensors["patch_row_scratch"].nbytes for b, p in forced.items()}
    arch = PRESETS[preset]
    assert rows[True] - rows[False] >= 8 * arch.patch_size**2 * arch.channels  # the widened block of four
    patch_line = chosen.report.op_table().splitlines()[1]  # the op table names the variant
    assert ("4-patch blocks" if blocks else "patch pairs") in patch_line


# 7 x 7 patches, 8 channels in 2 heads: the patch embedding is the peak of the memory plan, and of the speed plan's
# attention kernel without patch token blocks.
PATCH_PEAK = ArchConfig.uniform(image_size=28, channels=1, patch_size=7, embed_dim=8, depth=1, num_heads=2,
                                mlp_ratio=2, num_classes=10, pool="mean")  # fmt: skip


def test_speed_mode_takes_patch_token_blocks_that_raise_the_arena_only_within_the_budget():
    """Where the patch rows' token blocks would raise the arena, lowering leaves them out (memory mode keeps the
    least SRAM); speed mode takes them when they fit and the cost model predicts fewer instructions, and not under
    a budget that only the plan without them fits."""
    memory, speed = _choice(PATCH_PEAK, "memory"), _choice(PATCH_PEAK)
    without = planned(placeholder_qvit(PATCH_PEAK), "m", "fused", BOARD, replace(speed.chosen.variants,
                                                                                  patch_blocks=False))  # fmt: skip
    assert memory.chosen.variants.patch_blocks is False
    assert speed.chosen.variants.patch_blocks is True
    assert speed.chosen.report.sram_bytes > without.report.sram_bytes
    assert speed.chosen.report.predicted_instructions < without.report.predicted_instructions
    tight = _choice(PATCH_PEAK, sram=without.report.sram_bytes)
    assert tight.chosen.variants.patch_blocks is False
    assert tight.chosen.report.sram_bytes <= without.report.sram_bytes
