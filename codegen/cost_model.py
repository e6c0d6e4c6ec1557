"""Predicted instructions of a graph on the emulated Cortex-M (QEMU `-icount`): a linear model per op kind and kernel
variant over the sizes the kernel's loops run over, calibrated on measured per-op counts.

The coefficients are data (`cost_model.json` beside this file), written by `benchmarks/calibrate_cost.py` from
`mcuformer profile` runs of a spread of architectures; the file records the command, the calibration set and the
fit's error. The search turns a latency limit into an instruction limit with the board's clock and its assumed
cycles per instruction (`boards/*.toml`), and asks this model for every candidate, without weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mcuformer.codegen.ir import Graph, Op
from mcuformer.codegen.layout import is_widened
from mcuformer.codegen.ops import OPS, op_dims, op_macs, operand_map
from mcuformer.codegen.scratch import BLOCK_TOKENS, patch_row_blocks, uses_blocks
from mcuformer.errors import McuformerError

MODEL_FILE = Path(__file__).resolve().parent / "cost_model.json"


def op_features(graph: Graph, op: Op) -> dict[str, float]:
    """The sizes one op's instruction count grows with: a call, its MACs, the values it writes, its rows (tokens or
    patches). Attention also: the scores it normalises (heads x N^2), its MACs split into the linears and the
    score/context products (different loops), and the work its kernels redo per head and pass (LayerNorm and the
    shared qkv factor: heads x N x d, heads x N x d x qkv_rank). The MLP also: its hidden values. Fused blocks: the
    MACs of the tokens left over by the DSP kernels' 4-token blocks. Fused blocks on fewer than BLOCK_MIN_TOKENS
    tokens, one-row linears and patch rows not in token blocks run other code paths: their
    features carry a suffix, so they get coefficients of their own."""
    dims = op_dims(graph, op)
    out = graph.tensors[op.output]
    rows = math.prod(out.shape[:-1]) if len(out.shape) > 1 else 1
    macs = float(op_macs(graph, op))
    features = {"call": 1.0, "macs": macs, "values": float(out.nbytes), "rows": float(rows)}
    if "heads" in dims:
        n, d, heads = dims["tokens"], dims["channels"], dims["heads"]
        features["scores"] = float(heads * n * n)
        features["macs_attention"] = float(2 * n * n * d)
        features["macs"] = macs - features["macs_attention"]  # the linears (none in a plain attention op)
        features["head_rows"] = float(heads * n * d)
        features["head_factor"] = float(heads * n * d * dims.get("qkv_rank", 0))
    if "hidden" in dims:
        features["hidden"] = float(dims["tokens"] * dims["hidden"])
    blocks = OPS[op.kind].in_place_block and uses_blocks(dims["tokens"], dims["block_tokens"])
    if blocks:
        # The DSP blocks run BLOCK_TOKENS tokens at a time; the tokens left over take the slower one-token path.
        share = (dims["tokens"] % BLOCK_TOKENS) / dims["tokens"]
        features["macs_tail"] = features["macs"] * share
        features["attention_tail"] = features.get("macs_attention", 0.0) * share
    suffix = ""
    if op.kind == "patch_embed_rows" and not patch_row_blocks(dims):  # the DSP pair kernel
        suffix = "_pairs"
    elif OPS[op.kind].in_place_block and not blocks:  # one token at a time: short, or the block_tokens variant
        suffix = "_short"
    elif op.kind == "linear" and dims["tokens"] == 1:
        suffix = "_one"
    return {name + suffix: value for name, value in features.items() if value}


# Instructions the DSP channel loop saves per group of four inputs, output channel and block of four tokens when
# a fused op's linear has widened weights (codegen.layout): one LDRD instead of a load and two SXTB16, counted in
# the assembly (MCF_DOT4_GROUP16_FIXED in dsp/mcf_dsp_block.c), not fitted. The portable kernels gain nothing.
WIDENED_SAVING = {"dsp": 2.0, "portable": 0.0}


def linear_groups(graph: Graph, op: Op) -> Iterator[tuple[str, float]]:
    """(linear name, groups) for every linear of a fused op that the DSP token blocks run through the assembly
    channel loop: groups = blocks of four tokens x input groups of four x output channels x the times the kernel
    runs the layer (the qkv V factor: twice in the all-heads kernel, once per head in the per-head one). None
    where the op runs one token at a time (short sequences, or its block_tokens) or an in_ch that is not a multiple
    of four (C paths)."""
    if not OPS[op.kind].in_place_block:
        return
    dims = op_dims(graph, op)
    if not uses_blocks(dims["tokens"], dims["block_tokens"]):
        return
    blocks = -(-dims["tokens"] // BLOCK_TOKENS)
    repeats = {"attention_block": 2, "attention_block_heads": dims.get("heads", 1)}
    for role, name in operand_map(op).items():
        if not role.endswith(".weight") or not name:
            continue
        out_ch, in_ch = graph.shape(name)
        if in_ch % 4 == 0:
            layer = role.removesuffix(".weight")
            times = repeats.get(op.kind, 1) if layer == "qkv_v" else 1
            yield name.removesuffix("_w"), float(blocks * (in_ch // 4) * out_ch * times)


def widened_saving(graph: Graph, op: Op, variant: str) -> float:
    """Instructions the op's widened linears save (WIDENED_SAVING)."""
    saving = WIDENED_SAVING.get(variant, 0.0)
    if not saving:
        return 0.0
    return saving * sum(g for name, g in linear_groups(graph, op) if is_widened(graph.consts[f"{name}_w"].array))


@dataclass(frozen=True)
class CostModel:
    """Coefficients (instructions per unit of each feature) per op kind, for one kernel variant."""

    variant: str
    coefficients: dict[str, dict[str, float]]  # op kind -> feature -> instructions per unit
    calibrated: dict[str, list[str]]  # op kind -> the features the calibration set exercised
    # The largest relative error on held-out calibration models: a limit must hold for prediction x (1 + margin).
    margin: float = 0.0

    def op_instructions(self, graph: Graph, op: Op) -> float:
        weights = self.coefficients.get(op.kind)
        if weights is None:
            raise McuformerError(f"the cost model has no data for {op.kind} ops: recalibrate it "
                                 "(python benchmarks/calibrate_cost.py)")  # fmt: skip
        fitted = sum(weights.get(name, 0.0) * value for name, value in op_features(graph, op).items())
        return fitted - widened_saving(graph, op, self.variant)

    def covers(self, graph: Graph) -> bool:
        """Whether the calibration exercised every op kind of the graph and every size its ops grow with (a
        feature never seen, such as a code path no calibration model took, would be predicted as free)."""
        return all(set(op_features(graph, op)) <= set(self.calibrated.get(op.kind, ())) for op in graph.ops)

    def instructions(self, graph: Graph) -> int:
        """Predicted instructions of one inference (the sum over ops)."""
        return round(sum(self.op_instructions(graph, op) for op in graph.ops))


@cache
def load_cost_model(variant: str = "dsp") -> CostModel:
    """The shipped cost model of a kernel variant (cost_model.json)."""
    if not MODEL_FILE.is_file():
        raise McuformerError(f"{MODEL_FILE} is missing: run python benchmarks/calibrate_cost.py")
    data = json.loads(MODEL_FILE.read_text())
    if variant not in data["variants"]:
        raise McuformerError(f"the cost model has no {variant!r} kernels; it has {', '.join(data['variants'])}")
    entry = data["variants"][variant]
    return CostModel(variant, entry["coefficients"], entry.get("calibrated_features", {}),
                     float(entry.get("held_out_error", {}).get("max", 0.0)))  # fmt: skip


def fit_kind(rows: list[dict[str, float]], counts: list[float]) -> dict[str, float]:
    """Non-negative least squares of counts on the rows' features (relative error weighted: small ops count as
    much as large ones). Features that would take a negative coefficient are dropped one at a time (an active-set
    fit: every coefficient is an instruction cost, never a saving)."""
    import numpy as np

    names = sorted({name for row in rows for name, value in row.items() if value})
    target = np.asarray(counts, dtype=np.float64)
    weight = 1.0 / np.maximum(target, 1.0)
    while names:
        matrix = np.asarray([[row.get(name, 0.0) for name in names] for row in rows], dtype=np.float64)
        solution = np.linalg.lstsq(matrix * weight[:, None], target * weight, rcond=None)[0]
        if solution.min() >= 0:
            return {name: float(value) for name, value in zip(names, solution, strict=True) if value > 0}
        names.pop(int(np.argmin(solution)))
    return {}
