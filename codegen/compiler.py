"""`mcuformer compile`: model.pt -> quantize -> graph IR -> memory plan -> C sources + memory report."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mcuformer.arch import ArchConfig, load_arch
from mcuformer.boards import Board, load_board
from mcuformer.checkpoint import ModelFile, load_model
from mcuformer.codegen.build_dir import BuildDir
from mcuformer.codegen.emit import model_hash, write_sources
from mcuformer.codegen.ir import Graph
from mcuformer.codegen.lower import lower
from mcuformer.codegen.plan_plot import plot_plan
from mcuformer.codegen.planner import MemoryPlan, plan_memory
from mcuformer.codegen.report import MemoryReport, check_budget, memory_report
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


def build_graph(model_file: ModelFile, name: str, schedule: str = DEFAULT_SCHEDULE) -> tuple[QViT, Graph]:
    qmodel = quantize_model(model_file.model, model_file.calibration)
    return qmodel, lower(qmodel, name, schedule)


def graph_for_arch(arch: ArchConfig, name: str = "model", schedule: str = DEFAULT_SCHEDULE) -> Graph:
    """The graph of an architecture without weights: shapes, ops and buffers are all the plan needs."""
    return lower(placeholder_qvit(arch), name, schedule)


def plan_arch(arch: ArchConfig, board: str | Board, schedule: str = DEFAULT_SCHEDULE) -> MemoryReport:
    """The exact memory plan of an architecture on a board, with no weights: what `compile` will emit.

    This is the one planner: the search uses it as its constraint and the compiler emits the same plan, so
    peak SRAM and flash here equal what the compiled firmware reserves, to the byte.
    """
    board = load_board(board)
    graph = graph_for_arch(arch, (arch.name or "model").replace("-", "_"), schedule)
    return memory_report(graph, plan_memory(graph), board)


def plan_target(target: str | Path, schedule: str = DEFAULT_SCHEDULE) -> tuple[Graph, str]:
    """A model.pt file or an architecture (preset or JSON) -> its graph and a display name."""
    path = Path(target)
    if path.suffix == ".pt":
        model_file = load_model(path)
        name = model_file.arch.name or path.parent.name
        return build_graph(model_file, name.replace("-", "_"), schedule)[1], name
    arch = load_arch(target)
    return graph_for_arch(arch, (arch.name or "model").replace("-", "_"), schedule), arch.name or str(target)


def compile_model(
    model_path: str | Path,
    board: str | Board,
    out_dir: str | Path,
    name: str | None = None,
    enforce_budget: bool = True,
    schedule: str = DEFAULT_SCHEDULE,
) -> CompiledModel:
    """Compile model.pt for a board into out_dir (C sources, memory report, manifest)."""
    board = load_board(board)
    model_file = load_model(model_path)
    out = Path(out_dir)
    name = name or out.name or "model"
    qmodel, graph = build_graph(model_file, name, schedule)
    plan = plan_memory(graph)
    report = memory_report(graph, plan, board)
    if enforce_budget:
        check_budget(report)
    build = BuildDir(out)
    write_sources(graph, plan, build.src)
    if Path(model_path).resolve() != build.model.resolve():
        shutil.copyfile(model_path, build.model)  # the build is self-contained: eval re-derives from it
    report.write(build.memory_report)
    (out / "memory_report.txt").write_text(report.summary() + "\n\n" + report.op_table() + "\n")
    plot_plan(plan, out / "memory_plan.png", f"{name} on {board.name}: arena {plan.arena_bytes:,} B")
    manifest = {
        "name": name,
        "model_hash": model_hash(graph),
        "board": board.name,
        "schedule": schedule,
        "dataset": model_file.dataset.name,
        "arch": model_file.arch.to_dict(),
        "input_shape": list(graph.shape(graph.input)),
        "num_classes": graph.shape(graph.output)[-1],
        "logits_scale": qmodel.logits.scale,
        "logits_zero_point": qmodel.logits.zero_point,
        "arena_bytes": plan.arena_bytes,
        "fp32_accuracy": model_file.metrics.get("fp32_accuracy"),
    }
    build.write_manifest(manifest)
    return CompiledModel(qmodel, graph, plan, report, out)
