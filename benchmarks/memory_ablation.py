"""Peak SRAM (arena bytes) of the reference architectures under each schedule, against the analytic bound.

    python benchmarks/memory_ablation.py [--out docs/memory_ablation.md]

Columns: `layer` = layer by layer (whole tensors between ops; residual adds and GELU already in place),
`fused` = operator integration + token overwriting (per-token attention and MLP blocks written over the residual
stream, K and V the only full-sequence buffers) + patch-embedding decomposition (patch rows embedded one at a time,
tokens written over image rows already consumed). `bound` = the bytes the fused schedule cannot avoid at its
largest op: residual stream + K + V + one token's scratch in the attention block; max(tokens, image) + one patch
row of tokens at the patch embedding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mcuformer.arch import PRESETS, ArchConfig
from mcuformer.codegen.compiler import graph_for_arch
from mcuformer.codegen.lower import decomposed_image_offset
from mcuformer.codegen.planner import plan_memory

REFERENCE = ("cifar-p4-d64", "fmnist-small", "fmnist-lowrank", "mcuformer-240")


def _align(n: int) -> int:
    return (n + 3) // 4 * 4


def bound(arch: ArchConfig, scratch: dict[str, list[int]]) -> int:
    tokens = _align(arch.num_tokens * arch.embed_dim)
    image = _align(arch.image_size**2 * arch.channels)
    attention = 3 * tokens + max(scratch.get("attention_block", [0]))
    offset = decomposed_image_offset(arch)
    embed = tokens + image if offset is None else max(tokens, offset + image) + max(scratch["patch_embed_rows"])
    return max(attention, embed)


def row(name: str) -> tuple[str, int, int, int, str]:
    arch = PRESETS[name]
    layer = plan_memory(graph_for_arch(arch, "m", "layer"))
    graph = graph_for_arch(arch, "m", "fused")
    fused = plan_memory(graph)
    scratch: dict[str, list[int]] = {}
    for op in graph.ops:
        if op.scratch:
            scratch.setdefault(op.kind, []).append(graph.tensors[op.scratch[-1]].nbytes)
    return name, layer.arena_bytes, fused.arena_bytes, bound(arch, scratch), fused.op_names[fused.peak_op]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    header = "| model | tokens x dim | layer-by-layer B | fused B | saving | bound B | fused / bound | fused peak op |"
    lines = [header, "|" + "---|" * 8]
    for name in REFERENCE:
        arch = PRESETS[name]
        model, layer, fused, low, peak = row(name)
        lines.append(f"| {model} | {arch.num_tokens} x {arch.embed_dim} | {layer:,} | {fused:,} | "
                     f"{layer / fused:.2f}x | {low:,} | {fused / low:.3f} | {peak} |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/memory_ablation.py --out " + str(args.out)
        args.out.write_text(
            f"# Memory ablation\n\nRegenerate: `{command}`\n\n{__doc__.split(chr(10), 3)[3]}\n{table}\n"
        )


if __name__ == "__main__":
    main()
