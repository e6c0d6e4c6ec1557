"""The search's outputs besides model.pt: search.json (every candidate), the Pareto plots, summary.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcuformer.search.evolution import Candidate


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower cost x and higher accuracy y), by increasing cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)


def plot_pareto(path: Path, evolution: list[Candidate], random: list[Candidate], winner: Candidate,
                sram_budget: int, flash_budget: int, title: str,
                max_instructions: int | None = None) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for ax, attr, budget, label, unit in (
        (axes[0], "sram_bytes", sram_budget, "peak SRAM (KB, planner)", 1024),
        (axes[1], "flash_bytes", flash_budget, "flash (KB, planner)", 1024),
        (axes[2], "instructions", max_instructions, "instructions (millions, cost model)", 1e6),
    ):
        for history, colour, name in ((random, "tab:grey", "random search"), (evolution, "tab:blue", "evolution")):
            if not history:
                continue
            xs = [getattr(c, attr) / unit for c in history]
            ys = [100 * c.accuracy for c in history]
            ax.scatter(xs, ys, s=12, alpha=0.6, color=colour, label=name)
            front = pareto_front(list(zip(xs, ys, strict=True)))
            ax.plot([xs[i] for i in front], [ys[i] for i in front], color=colour, lw=1)
        ax.scatter([getattr(winner, attr) / unit], [100 * winner.accuracy], marker="*", s=160, color="tab:red",
                   zorder=5, label="winner")  # fmt: skip
        if budget is not None:
            ax.axvline(budget / unit, color="tab:red", ls="--", lw=1, label="budget")
        ax.set_xlabel(label)
        ax.set_ylabel("validation accuracy, inherited weights (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_markdown(result: dict[str, Any]) -> str:
    w, r = result["winner"], result.get("random_best")
    arch = w["arch"]
    lines = [
        f"# Search: {result['dataset']} on {result['board']}",
        "",
        f"Constraints: peak SRAM <= {result['sram_budget']:,} B, flash <= {result['flash_budget']:,} B"
        + (f", instructions <= {result['max_instructions']:,} (cost model)" if result.get("max_instructions") else "")
        + f" (preset `{result['preset']}`, seed {result['seed']}).",
        "",
        "## Winner",
        "",
        f"- input {arch['image_size']}x{arch['image_size']}, patch {arch['patch_size']}, width {arch['embed_dim']}, "
        f"depth {arch['depth']}, heads {arch['num_heads']}, MLP ratios {arch['mlp_ratios']}",
        "- ranks (qkv/proj/fc1/fc2 per layer): "
        + "; ".join("/".join(str(v) for v in r_.values()) for r_ in arch["ranks"]),
        f"- peak SRAM {w['sram_bytes']:,} B, flash {w['flash_bytes']:,} B, {w['macs']:,} MACs, "
        f"~{w.get('instructions', 0):,} instructions predicted, {w['params']:,} parameters",
        f"- validation accuracy with inherited weights {100 * w['accuracy']:.2f}%",
    ]
    final = result.get("final", {})
    if final:
        lines.append(f"- after finetuning: fp32 test accuracy {100 * final['fp32_accuracy']:.2f}%, int8 test "
                     f"accuracy {100 * final['int8_accuracy']:.2f}% (the int8 reference = the device)")  # fmt: skip
        if "qat_val_int8_accuracy" in final:
            kept = "quantization-aware" if final["qat"] else "post-training"
            lines.append(f"- int8 validation accuracy: post-training quantization "
                         f"{100 * final['ptq_val_int8_accuracy']:.2f}%, quantization-aware finetuning "
                         f"{100 * final['qat_val_int8_accuracy']:.2f}%: the {kept} model is kept")  # fmt: skip
    lines += ["", "## Search", "",
              "| method | evaluations | best val. accuracy (inherited) | its peak SRAM | its flash |",
              "|---|---|---|---|---|"]  # fmt: skip
    lines.append(f"| evolution | {result['evaluations']['evolution']} | {100 * w['accuracy']:.2f}% | "
                 f"{w['sram_bytes']:,} B | {w['flash_bytes']:,} B |")  # fmt: skip
    if r:
        lines.append(f"| random | {result['evaluations']['random']} | {100 * r['accuracy']:.2f}% | "
                     f"{r['sram_bytes']:,} B | {r['flash_bytes']:,} B |")  # fmt: skip
    # The plan promised above is the fastest within these budgets: compile with the same ones to get it.
    budgets = f"--board {result['board']} --sram {result['sram_budget']} --flash {result['flash_budget']}"
    lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result.get("seconds", {}).items()), "",
              f"Compile the plan promised here: `mcuformer compile model.pt {budgets}`.", "",
              "Files: `model.pt` (ready for `mcuformer compile`), `search.json` (every candidate), "
              "`pareto.png` (accuracy against peak SRAM, flash and predicted instructions)."]  # fmt: skip
    return "\n".join(lines) + "\n"
