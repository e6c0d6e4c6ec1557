"""What a candidate costs on the board: exact SRAM, flash and MACs from the compiler's plan, and its
instructions from the cost model (codegen/cost_model.py).

The planner (`plan_arch`) is the one the compiler emits, so a candidate accepted here compiles and fits. Calls are
cached per architecture (ArchConfig is frozen and hashable; its name does not take part in equality).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mcuformer.arch import ArchConfig
from mcuformer.boards import Board, load_board
from mcuformer.errors import BudgetError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|k|mb|mib|m)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}


def parse_size(text: str | int) -> int:
    """'320KB', '0.5MB', '327680' -> bytes (KB = 1024 B, as the boards' datasheets count SRAM)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise BudgetError(f"cannot read the size {text!r}; write it like 320KB, 0.5MB or 327680")
    value = float(match.group(1)) * _UNITS[(match.group(2) or "").lower() or None]
    if value < 1 or value != int(value):
        raise BudgetError(f"size {text!r} is not a whole, positive number of bytes")
    return int(value)


@dataclass(frozen=True)
class Cost:
    sram_bytes: int
    flash_bytes: int
    macs: int
    instructions: int  # predicted by the cost model for the board's kernels
    params: int
    fits: bool


_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|ms|us)\s*$", re.IGNORECASE)
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def parse_latency(text: str) -> float:
    """'10ms', '0.5s', '800us' -> seconds."""
    match = _TIME.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise BudgetError(f"cannot read the latency {text!r}; write it like 10ms, 0.5s or 800us")
    return float(match.group(1)) * _TIME_UNITS[match.group(2).lower()]


@dataclass
class Constraints:
    """Hard limits of a search: peak SRAM and flash as the compiler plans them, optionally an instruction limit
    (given as such, or as a latency at the board's clock and assumed cycles per instruction)."""

    board: Board
    sram_budget: int
    flash_budget: int
    max_instructions: int | None = None
    schedule: str = "fused"
    _cache: dict[ArchConfig, Cost] = field(default_factory=dict, repr=False)

    @classmethod
    def for_board(
        cls,
        board: str | Board,
        sram: int | str | None = None,
        flash: int | str | None = None,
        max_instructions: int | None = None,
        latency: str | None = None,
    ) -> Constraints:
        b = load_board(board)
        sram_budget = b.sram_bytes if sram is None else parse_size(sram)
        flash_budget = b.flash_bytes if flash is None else parse_size(flash)
        if sram_budget > b.sram_bytes:
            raise BudgetError(f"SRAM budget {sram_budget:,} B exceeds the {b.name}'s {b.sram_bytes:,} B")
        if flash_budget > b.flash_bytes:
            raise BudgetError(f"flash budget {flash_budget:,} B exceeds the {b.name}'s {b.flash_bytes:,} B")
        limits = [] if max_instructions is None else [max_instructions]
        if latency is not None:
            limits.append(b.instructions_within(parse_latency(latency)))
        return cls(b, sram_budget, flash_budget, min(limits) if limits else None)

    def cost(self, arch: ArchConfig) -> Cost:
        cached = self._cache.get(arch)
        if cached is None:
            from mcuformer.codegen.compiler import Budgets, plan_arch  # the compiler is heavy; import on first use

            # The fastest plan within the budgets: what `compile --sram --flash` with them emits.
            budgets = Budgets(sram=self.sram_budget, flash=self.flash_budget)
            report = plan_arch(arch, self.board, schedule=self.schedule, budgets=budgets)
            instructions = report.predicted_instructions
            if instructions is None:
                raise BudgetError("the instruction cost model is missing: python benchmarks/calibrate_cost.py")
            fits = report.sram_bytes <= self.sram_budget and report.flash_bytes <= self.flash_budget
            if self.max_instructions is not None:  # with the cost model's error: the measured count must fit
                fits = fits and instructions * (1 + report.predicted_margin) <= self.max_instructions
            cached = Cost(report.sram_bytes, report.flash_bytes, report.macs, instructions, arch.num_params(), fits)
            self._cache[arch] = cached
        return cached

    def fits(self, arch: ArchConfig) -> bool:
        return self.cost(arch).fits

    def describe(self) -> str:
        text = f"SRAM <= {self.sram_budget:,} B, flash <= {self.flash_budget:,} B on {self.board.name}"
        if self.max_instructions is None:
            return text
        ms = 1000 * self.board.seconds(self.max_instructions)
        return text + f", instructions <= {self.max_instructions:,} (~{ms:.1f} ms; predicted, with the model's error)"
