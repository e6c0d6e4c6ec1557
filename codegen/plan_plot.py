"""Draws a memory plan as a timeline: every buffer a rectangle over op index (x) and arena address (y)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from mcuformer.codegen.planner import MemoryPlan  # noqa: E402

PALETTE = plt.get_cmap("tab20")


def plot_plan(plan: MemoryPlan, path: Path, title: str = "") -> Path:
    """Write the timeline as PNG or SVG (by the file suffix)."""
    ops = len(plan.op_names)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.18 * ops), 6.0))
    for index, buffer in enumerate(sorted(plan.buffers, key=lambda b: (b.offset, b.first))):
        rect = Rectangle(
            (buffer.first - 0.45, buffer.offset / 1024),
            buffer.last - buffer.first + 0.9,
            buffer.size / 1024,
            facecolor=PALETTE(index % 20),
            edgecolor="black",
            linewidth=0.4,
        )
        ax.add_patch(rect)
        if buffer.size >= plan.arena_bytes * 0.04:
            ax.text(buffer.first, (buffer.offset + buffer.size / 2) / 1024, buffer.name, fontsize=6, va="center")
    peak = plan.peak_op
    ax.axvline(peak, color="red", linestyle="--", linewidth=0.8)
    ax.set_xlim(-1, ops)
    ax.set_ylim(0, plan.arena_bytes / 1024 * 1.02)
    ax.set_xlabel("op index")
    ax.set_ylabel("arena offset (KiB)")
    ax.set_title(title or f"arena {plan.arena_bytes:,} B; peak at op {peak} ({plan.op_names[peak]})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
