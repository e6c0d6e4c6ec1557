"""The per-function profile of the DSP fused blocks: reading QEMU's execution trace, and a real traced run."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcuformer.device.errors import QemuError
from mcuformer.device.kernel_hotspots import (
    BlockShape,
    PhaseHotspots,
    check_against_ticks,
    count_trace,
    profile_blocks,
)

# A log in QEMU 7.2's `-d in_asm,exec,nochain` format: the block at 0x100 is translated twice (the second time
# shorter, as -icount does when a budget runs out), and 0x200 is the phase mark.
TRACE = """\
----------------
IN: kernel
0x00000100:  4809       ldr      r0, [pc, #0x24]
0x00000102:  fb20 0003  smlad    r0, r0, r3, r0
0x00000106:  d207       bhs      #0x898a

Trace 0: 0x7f0000000100 [00800408/00000100/00000110/ff020200] kernel
----------------
IN: profile_phase
0x00000200:  b508       push     {r3, lr}

Trace 0: 0x7f0000000200 [00800408/00000200/00000110/ff020200] profile_phase
Trace 0: 0x7f0000000100 [00800408/00000100/00000110/ff020200] kernel
----------------
IN: kernel
0x00000100:  4809       ldr      r0, [pc, #0x24]

Trace 0: 0x7f0000000300 [00800408/00000100/00000110/ff020200] kernel
Trace 0: 0x7f0000000100 [00800408/00000100/00000110/ff020200] kernel
Trace 0: 0x7f0000000200 [00800408/00000200/00000110/ff020200] profile_phase
"""


def test_trace_counts_each_translation_by_its_host_address_and_splits_phases() -> None:
    counts = count_trace(TRACE.splitlines(keepends=True), phase_entry=0x200)
    assert len(counts.phases) == 3
    assert counts.phases[0] == {0x100: 1, 0x102: 1, 0x106: 1}
    # phase 1: the mark itself, the long block twice and the short one once
    assert counts.phases[1] == {0x200: 1, 0x100: 3, 0x102: 2, 0x106: 2}
    assert counts.phases[2] == {0x200: 1}
    assert counts.mnemonics[0x102] == "smlad"


def test_a_trace_that_disagrees_with_systick_is_an_error() -> None:
    phase = PhaseHotspots("mlp_block", macs=1000, functions={"mcf_dsp_channels4": 100_000}, mac_instructions=500)
    check_against_ticks([phase], [("mlp_block", 0), ("end", 2500)])  # 2,500 ticks = 100,000 instructions
    with pytest.raises(QemuError, match="trace reader lost blocks"):
        check_against_ticks([phase], [("mlp_block", 0), ("end", 2000)])


def test_profile_of_the_fused_blocks_on_qemu(tmp_path: Path) -> None:
    shape = BlockShape(tokens=16, channels=8, heads=2, hidden=16)
    phases = {p.kernel: p for p in profile_blocks(shape, tmp_path)}  # checked against SysTick inside
    assert set(phases) == {"mlp_block", "attention_block_heads"}
    for phase in phases.values():
        assert phase.macs == shape.macs(phase.kernel)
        # an SMLAD does two MACs at most: fewer multiply-accumulate instructions would mean lost blocks
        assert phase.macs <= 2 * phase.mac_instructions <= 2 * phase.total
        assert "mcf_dsp_channels4" in phase.functions
        assert not {"profile_phase", "rnd_bytes", "put", "end_line"} & set(phase.functions)  # the harness's own
        assert all(count > 0 for count in phase.functions.values())
    attention = phases["attention_block_heads"].functions
    assert {"softmax_u16", "mcf_dsp_channels4_shared", "ln_row_lean"} <= set(attention)
    assert "__smlad" not in attention  # instruction wrappers count for the loop that inlines them
