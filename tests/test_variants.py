"""The planner's speed-for-memory trade (codegen/variants.py): which attention kernel each block runs.

fmnist-small (49 tokens, 4 heads) offers the trade: per head normalising once per token is faster than per head
normalising per head, for tokens x d more scratch per block. The choices are pinned under a loose and a tight
budget; the device side (arena, SRAM, flash, exact logits) is in test_schedules_device.py.
"""

from __future__ import annotations

import pytest

from mcuformer.arch import PRESETS, ArchConfig
from mcuformer.boards import load_board
from mcuformer.codegen.compiler import Budgets, plan_arch, plan_qmodel
from mcuformer.codegen.variants import choose_plan, trade_table
from mcuformer.errors import McuformerError
from mcuformer.quant.placeholder import placeholder_qvit

ONCE, HEADS, ALL = "attention_block_heads_once", "attention_block_heads", "attention_block"
BOARD = load_board("stm32f746")


# Four tokens (14x14 pixels, 7x7 patches): the DSP blocks run one token at a time.
SHORT = ArchConfig.uniform(image_size=14, channels=1, patch_size=7, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2,
                           num_classes=10, pool="mean")  # fmt: skip


def _choice(preset: str | ArchConfig, optimize: str = "speed", sram: int | None = None, flash: int | None = None):
    arch = PRESETS[preset] if isinstance(preset, str) else preset
    return choose_plan(placeholder_qvit(arch), "m", BOARD, "fused", optimize, sram, flash)


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
    # The extra SRAM is the once kernel's copy of every token's normalised input (49 tokens x 64 channels).
    arch = PRESETS["fmnist-small"]
    assert fast.arena_bytes - small.arena_bytes == arch.num_tokens * arch.embed_dim


def test_tight_budget_keeps_the_small_plan():
    """An SRAM budget one byte below the fast plan's: the fastest plan that fits is the memory plan."""
    fast = _choice("fmnist-small").chosen.report.sram_bytes
    choice = _choice("fmnist-small", sram=fast - 1)
    assert choice.chosen is choice.memory
    assert choice.chosen.report.sram_bytes <= fast - 1
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
        assert ("heads_once" in out.split("| speed (chosen) |")[1].splitlines()[0]) == (kind == ONCE)
