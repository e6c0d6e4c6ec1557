"""One model, two int8 deployments: ours (planner + numpy reference = the device) and TensorFlow Lite Micro's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuformer.boards import DEFAULT_BOARD, Board, load_board
from mcuformer.checkpoint import ModelFile
from mcuformer.codegen.compiler import build_graph
from mcuformer.codegen.planner import plan_memory
from mcuformer.codegen.report import memory_report
from mcuformer.data import ImageSet
from mcuformer.peers.tflm import TflmModel, convert_int8
from mcuformer.quant import reference


@dataclass(frozen=True)
class PeerRow:
    model: str
    images: int
    our_arena: int
    our_sram: int  # arena + stack reserve + runtime statics: all the SRAM our firmware needs
    tflm_arena: int  # TFLM's whole tensor arena (its stack and interpreter statics not counted)
    tflm_activations: int  # the planned (non-persistent) part of that arena
    our_flash: int  # weights, biases, requantization, tables and code
    tflite_bytes: int  # the .tflite flatbuffer (weights and graph; TFLM's code not counted)
    our_accuracy: float
    tflm_accuracy: float
    agreement: float  # top-1 agreement between the two int8 models

    @property
    def sram_ratio(self) -> float:
        return self.tflm_arena / self.our_sram


def compare(
    model_file: ModelFile,
    calibration: ImageSet,
    test: ImageSet,
    board: str | Board = DEFAULT_BOARD,
    name: str | None = None,
) -> PeerRow:
    """Both int8 versions of model_file on the same test images; calibration: the images TFLM quantizes with."""
    board = load_board(board)
    label = name or model_file.arch.name or "model"
    qmodel, graph = build_graph(model_file, label.replace("-", "_"))
    plan = plan_memory(graph)
    report = memory_report(graph, plan, board)
    ours = reference.predict(qmodel, test.images).argmax(axis=1)
    tflm = TflmModel(convert_int8(model_file.model, calibration.images))
    theirs = tflm.predict_logits(test.images).argmax(axis=1)
    arena = tflm.arena()
    return PeerRow(
        model=label,
        images=len(test.images),
        our_arena=report.arena_bytes,
        our_sram=report.sram_bytes,
        tflm_arena=arena.total_bytes,
        tflm_activations=arena.head_bytes,
        our_flash=report.flash_bytes,
        tflite_bytes=len(tflm.flatbuffer),
        our_accuracy=float(np.mean(ours == test.labels)),
        tflm_accuracy=float(np.mean(theirs == test.labels)),
        agreement=float(np.mean(ours == theirs)),
    )


def peer_table(rows: list[PeerRow]) -> str:
    lines = [
        "| model | test images | our SRAM B (arena) | TFLM arena B (activations) | TFLM / ours | our flash B "
        "| .tflite B | our int8 acc | TFLM int8 acc | top-1 agreement |",
        "|" + "---|" * 10,
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.images:,} | {r.our_sram:,} ({r.our_arena:,}) | {r.tflm_arena:,} "
            f"({r.tflm_activations:,}) | {r.sram_ratio:.1f}x | {r.our_flash:,} | {r.tflite_bytes:,} "
            f"| {100 * r.our_accuracy:.2f}% | {100 * r.tflm_accuracy:.2f}% | {100 * r.agreement:.2f}% |"
        )
    return "\n".join(lines)
