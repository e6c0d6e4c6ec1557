"""`mcuformer compile`: model.pt -> quantize -> graph IR -> memory plan -> C sources + memory report."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mcuformer.arch import ArchConfig, load_arch
from mcuformer.boards import Board, load_board
from mcuformer.checkpoint import ModelFile, load_model
from mcuformer.codegen.build_dir import BuildDir
from mcuformer.codegen.code_size import kernel_defines
from mcuformer.codegen.emit import model_hash, write_sources
from mcuformer.codegen.ir import Graph
from mcuformer.codegen.lower import DEFAULT_VARIANTS, Variants, lower
from mcuformer.codegen.plan_plot import plot_plan
from mcuformer.codegen.planner import MemoryPlan
from mcuformer.codegen.report import MemoryReport, check_budget
from mcuformer.codegen.variants import Choice, choose_plan, planned, trade_table
from mcuformer.quant.placeholder import placeholder_qvit
from mcuformer.quant.ptq import quantize_model
from mcuformer.quant.qmodel import QViT

DEFAULT_SCHEDULE = "fused"


@dataclass(frozen=True)
class CompiledModel:
    qmodel: QViT
    graph: Graph
    plan: MemoryPlan
    report: MemoryReport
    out_dir: Path


def build_graph(model_file: ModelFile, name: str, schedule: str = DEFAULT_SCHEDULE,
                variants: Variants = DEFAULT_VARIANTS) -> tuple[QViT, Graph]:  # fmt: skip
    """The quantized model and its graph with the given kernel variants (a build's manifest records them)."""
    qmodel = quantize_model(model_file.model, model_file.calibration)
    return qmodel, lower(qmodel, name, schedule, variants)


def graph_for_arch(arch: ArchConfig, name: str = "model", schedule: str = DEFAULT_SCHEDULE,
                   variants: Variants = DEFAULT_VARIANTS) -> Graph:  # fmt: skip
    """The graph of an architecture without weights: shapes, ops and buffers are all the plan needs (the default
    variants: the least memory)."""
    return lower(placeholder_qvit(arch), name, schedule, variants)


@dataclass(frozen=True)
class Budgets:
    """What a plan must fit (None: the board's) and how it spends the room (codegen.variants.OPTIMIZE)."""

    optimize: str = "speed"
    sram: int | None = None
    flash: int | None = None
    variants: Variants | None = None  # force these kernel variants instead (calibration, benchmarks, tests)


DEFAULT_BUDGETS = Budgets()


def plan_qmodel(qmodel: QViT, name: str, board: Board, schedule: str, budgets: Budgets) -> Choice:
    """The one planner: the lowering and memory plan `compile` emits (see codegen.variants), with the report's
    budgets the ones given."""
    if budgets.variants is not None:
        forced = planned(qmodel, name, schedule, board, budgets.variants)
        choice = Choice(forced, forced, budgets.optimize, board.sram_bytes, board.flash_bytes)
    else:
        choice = choose_plan(qmodel, name, board, schedule, budgets.optimize, budgets.sram, budgets.flash)
    return choice.with_report_budgets()


def plan_arch(arch: ArchConfig, board: str | Board, schedule: str = DEFAULT_SCHEDULE,
              budgets: Budgets = DEFAULT_BUDGETS) -> MemoryReport:  # fmt: skip
    """The exact memory plan of an architecture on a board, with no weights: what `compile` will emit.

    This is the one planner: the search uses it as its constraint and the compiler emits the same plan, so
    peak SRAM and flash here equal what the compiled firmware reserves, to the byte (given the same budgets).
    """
    board = load_board(board)
    name = (arch.name or "model").replace("-", "_")
    return plan_qmodel(placeholder_qvit(arch), name, board, schedule, budgets).chosen.report


def plan_target(target: str | Path, board: Board, schedule: str = DEFAULT_SCHEDULE,
                budgets: Budgets = DEFAULT_BUDGETS) -> tuple[Choice, str]:  # fmt: skip
    """A model.pt file or an architecture (preset or JSON) -> its plan on `board` and a display name."""
    path = Path(target)
    if path.suffix == ".pt":
        model_file = load_model(path)
        name = model_file.arch.name or path.parent.name
        qmodel = quantize_model(model_file.model, model_file.calibration)
    else:
        arch = load_arch(target)
        name = arch.name or str(target)
        qmodel = placeholder_qvit(arch)
    return plan_qmodel(qmodel, name.replace("-", "_"), board, schedule, budgets), name


def compile_model(
    model_path: str | Path,
    board: str | Board,
    out_dir: str | Path,
    name: str | None = None,
    enforce_budget: bool = True,
    schedule: str = DEFAULT_SCHEDULE,
    budgets: Budgets = DEFAULT_BUDGETS,
) -> CompiledModel:
    """Compile model.pt for a board into out_dir (C sources, memory report, manifest): the fastest plan within
    the budgets, or the smallest (`budgets`)."""
    board = load_board(board)
    model_file = load_model(model_path)
    out = Path(out_dir)
    name = name or out.name or "model"
    qmodel = quantize_model(model_file.model, model_file.calibration)
    choice = plan_qmodel(qmodel, name, board, schedule, budgets)
    graph, plan, report = choice.chosen.graph, choice.chosen.plan, choice.chosen.report
    if enforce_budget:
        check_budget(report)
    build = BuildDir(out)
    write_sources(graph, plan, build.src)
    if Path(model_path).resolve() != build.model.resolve():
        shutil.copyfile(model_path, build.model)  # the build is self-contained: eval re-derives from it
    report.write(build.memory_report)
    (out / "memory_report.txt").write_text(report.summary() + "\n\n" + report.op_table() + "\n")
    (out / "plan_trade.md").write_text(trade_table(choice) + "\n")
    plot_plan(plan, out / "memory_plan.png", f"{name} on {board.name}: arena {plan.arena_bytes:,} B")
    manifest = {
        "name": name,
        "model_hash": model_hash(graph),
        "board": board.name,
        "schedule": schedule,
        "optimize": budgets.optimize,
        "attention": list(choice.chosen.attention),
        "widened": list(choice.chosen.widened),
        "block_tokens": choice.chosen.variants.block_tokens,
        "dataset": model_file.dataset.name,
        "arch": model_file.arch.to_dict(),
        "input_shape": list(graph.shape(graph.input)),
        "num_classes": graph.shape(graph.output)[-1],
        "logits_scale": qmodel.logits.scale,
        "logits_zero_point": qmodel.logits.zero_point,
        "arena_bytes": plan.arena_bytes,
        "kernel_defines": kernel_defines(graph),  # paths of the kernels this model never takes, compiled out
        "fp32_accuracy": model_file.metrics.get("fp32_accuracy"),
    }
    build.write_manifest(manifest)
    return CompiledModel(qmodel, graph, plan, report, out)
