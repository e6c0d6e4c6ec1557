"""How well the supernet ranks architectures: Kendall's tau between inherited-weight validation accuracy (what the
search sees) and stand-alone validation accuracy (each architecture trained alone, briefly, from scratch).

    python benchmarks/supernet_ranking.py --run runs/<search> [--archs 10] [--epochs 3] [--out runs/ranking]
        [--doc docs/ranking.md]

The architectures are the search's own candidates (search.json of a finished `mcuformer search`), picked evenly
over their range of inherited accuracy. Each is trained with the usual recipe (`mcuformer train`, TrainConfig
defaults) for --epochs epochs on the search's training split and scored on the same validation images the search
scored it on (the same seeded split; the test set is not used). Training checkpoints every epoch and resumes, so
a killed run continues. Writes a table and a scatter plot (ranking.png) to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

from mcuformer.arch import ArchConfig
from mcuformer.train import TrainConfig, train


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    """Kendall's tau-b (ties in either list counted as neither concordant nor discordant)."""
    concordant = discordant = ties_x = ties_y = 0
    for i, j in combinations(range(len(xs)), 2):
        dx, dy = xs[i] - xs[j], ys[i] - ys[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx * dy > 0:
            concordant += 1
        else:
            discordant += 1
    denominator = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denominator if denominator else 0.0


def pick(candidates: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` distinct architectures spread evenly over the inherited-accuracy range."""
    unique: dict[str, dict[str, Any]] = {}
    for c in sorted(candidates, key=lambda c: c["accuracy"]):
        unique.setdefault(json.dumps(c["arch"], sort_keys=True), c)
    ordered = list(unique.values())
    if len(ordered) <= count:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (count - 1))] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished search folder (search.json, run_key.json)")
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/ranking")
    parser.add_argument("--doc", help="write the table to this markdown file")
    args = parser.parse_args()
    run, out = Path(args.run), Path(args.out)
    result = json.loads((run / "search.json").read_text())
    settings = result["settings"]
    chosen = pick(result["candidates"], args.archs)
    rows = []
    for index, candidate in enumerate(chosen):
        arch = ArchConfig.from_dict(candidate["arch"])
        config = TrainConfig(epochs=args.epochs, seed=result["seed"], val_size=settings["val_size"],
                             train_limit=settings["train_limit"])  # fmt: skip
        model = train(arch, result["dataset"], out / f"arch{index:02d}", config)
        metrics = model.metrics
        rows.append({"arch": candidate["arch"], "inherited": candidate["accuracy"],
                     "standalone": metrics["fp32_val_accuracy"], "seconds": metrics["train_seconds"]})  # fmt: skip
        (out / "ranking.json").write_text(json.dumps(rows, indent=1) + "\n")
    tau = kendall_tau([r["inherited"] for r in rows], [r["standalone"] for r in rows])
    command = "python benchmarks/supernet_ranking.py " + " ".join(sys.argv[1:])
    lines = [f"Regenerate: `{command}`", "",
             f"Kendall's tau over {len(rows)} architectures of `{result['space']}` ({result['preset']} preset): "
             f"**{tau:.2f}** (stand-alone: {args.epochs} epochs from scratch each, "
             f"{sum(r['seconds'] for r in rows) / 60:.0f} min in all)", "",
             "| architecture | inherited val. accuracy | stand-alone val. accuracy |", "|---|---|---|"]  # fmt: skip
    for r in rows:
        a = r["arch"]
        lines.append(f"| p{a['patch_size']} d{a['embed_dim']} L{a['depth']} | {100 * r['inherited']:.2f}% | "
                     f"{100 * r['standalone']:.2f}% |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    print(table)
    plot(rows, tau, out / "ranking.png")
    if args.doc:
        Path(args.doc).write_text(table)


def plot(rows: list[dict[str, Any]], tau: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.2), constrained_layout=True)
    ax.scatter([100 * r["inherited"] for r in rows], [100 * r["standalone"] for r in rows], color="tab:blue")
    ax.set_xlabel("validation accuracy, inherited weights (%)")
    ax.set_ylabel("validation accuracy, trained alone (%)")
    ax.set_title(f"supernet ranking: Kendall's tau {tau:.2f}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
