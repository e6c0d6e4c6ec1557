"""The serial eval over a damaged link: QEMU's Cortex-M7 behind a fault-injecting proxy, one row per fault kind.

    python benchmarks/serial_faults.py [--build BUILD] [--images 1000] [--only "flips 1e-4" ...] [--doc FILE]
        [--resume]

Each scenario runs `mcuformer eval BUILD --port socket://...` (evaluate_build with a port) through
mcuformer.device.faults.FaultProxy in front of a fresh QEMU, on the first --images test images, and prints: faults
injected, resends, resends after timeouts, device restarts (each followed by a handshake), images completed,
wrong results (logits that differ from the int8 reference: must be 0), seconds and the overhead over the clean
link. A scenario that cannot finish must end in an error naming the image, never in a wrong number. Without
--build the script trains and compiles a small model first (runs/faults/micro, about a minute). Each finished
scenario is saved (runs/faults/results.json); --resume keeps the ones measured with the same images and seed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mcuformer.arch import PRESETS
from mcuformer.boards import load_board
from mcuformer.codegen.build_dir import read_manifest
from mcuformer.codegen.compiler import compile_model
from mcuformer.device.build import build_firmware
from mcuformer.device.errors import DeviceError
from mcuformer.device.faults import FaultProxy, Faults
from mcuformer.device.protocol import HEADER_BYTES, TRAILER_BYTES
from mcuformer.device.qemu import qemu_session
from mcuformer.evaluate import evaluate_build
from mcuformer.train import TrainConfig, train

HOST_PARTIAL = "eval_host.partial.npz"  # where evaluate_build checkpoints a run given a port


def scenarios(frame: int, images: int) -> dict[str, dict[str, Any]]:
    """Fault settings per scenario; `frame` is the size of one INFER frame (restarts land mid-frame or after it)."""
    hello = HEADER_BYTES + TRAILER_BYTES
    every = max(images // 5, 2)  # five restarts per run, alternately mid-frame and while the device computes
    restarts = tuple(hello + k * every * frame + (frame // 2 if k % 2 else 0) for k in range(1, 6))
    both = lambda **f: {"to_device": Faults(**f), "to_host": Faults(**f)}  # noqa: E731
    return {
        "clean": {},
        "flips 1e-4": both(flip=1e-4),
        "flips 1e-3": both(flip=1e-3),
        "drops 1e-4": both(drop=1e-4),
        "drops host->device 1e-3": {"to_device": Faults(drop=1e-3)},
        "drops device->host 1e-2 (reply header, payload, trailer)": {"to_host": Faults(drop=1e-2)},
        "duplicates 1e-3": both(duplicate=1e-3),
        "garbage 300 B host->device": {"to_device": Faults(garbage=1e-4)},
        "garbage 300 B device->host": {"to_host": Faults(garbage=2e-3)},
        "2 s delays either way": both(delay=0.01, delay_s=2.0),
        "device restarts (mid-frame, while computing)": {"restart_at": restarts},
        "flips + drops 1e-4 + restarts": {**both(flip=1e-4, drop=1e-4), "restart_at": restarts},
    }


def default_build(out: Path) -> Path:
    """A small model trained briefly and compiled for the emulated M7 (the link is under test, not accuracy)."""
    build = out / "micro" / "build"
    if (build / "mcuformer.json").is_file():
        return build
    train(PRESETS["micro"], "fashion-mnist", out / "micro", TrainConfig(epochs=1, train_limit=4000, val_size=1000))
    compile_model(out / "micro" / "model.pt", "qemu-m7", build, name="micro")
    return build


def run_scenario(build: Path, elf: Path, images: int, settings: dict[str, Any], seed: int) -> dict[str, Any]:
    (build / HOST_PARTIAL).unlink(missing_ok=True)
    start = time.perf_counter()
    row: dict[str, Any] = {}
    with qemu_session(elf, hello=False, monitor=True, session_timeout=3600) as session:
        proxy = FaultProxy(session.link.port, seed=seed, restart=session.reset, max_seconds=3000, **settings)
        with proxy:
            try:
                result = evaluate_build(build, port=proxy.url, limit=images)
                link = result.link or {}
                row.update(completed=result.images, wrong=round((1 - result.logits_exact) * result.images),
                           retries=link.get("retries", 0), timeouts=link.get("timeouts", 0),
                           restarts=link.get("restarts", 0), error="")  # fmt: skip
            except DeviceError as err:
                done = int(np.load(build / HOST_PARTIAL)["done"]) if (build / HOST_PARTIAL).is_file() else 0
                row.update(completed=done, wrong=0, retries="-", timeouts="-", restarts="-", error=str(err)[:160])
        row["injected"] = sum(c.injected for c in proxy.counts.values())
    row["seconds"] = time.perf_counter() - start
    return row


def markdown(rows: dict[str, dict[str, Any]], images: int, command: str) -> str:
    clean = rows.get("clean", {}).get("seconds")
    lines = [
        "# The serial eval over a damaged link",
        "",
        "`mcuformer eval BUILD --port socket://...` through a proxy (mcuformer.device.faults) that damages the bytes",
        "between the host and QEMU's emulated Cortex-M7; rates are per byte and apply both ways unless the scenario",
        "names a direction. `wrong results` counts test images whose logits differ from the int8 reference: it must",
        "be 0 whatever the link does (an image that cannot get through stops the eval with an error naming it).",
        "",
        f"Regenerate: `{command}` ({images} test images per scenario, QEMU mps2-an500, a small model)",
        "",
        "| scenario | faults injected | resends | after timeouts | device restarts | images completed | wrong results "
        "| seconds | overhead |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        overhead = f"{r['seconds'] / clean - 1:+.0%}" if clean and name != "clean" else "-"
        done = f"{r['completed']} / {images}" + (f" (stopped: {r['error']})" if r["error"] else "")
        lines.append(f"| {name} | {r['injected']} | {r['retries']} | {r['timeouts']} | {r['restarts']} | {done} | "
                     f"{r['wrong']} | {r['seconds']:.0f} | {overhead} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", help="a build compiled for qemu-m7 (default: a small model, trained here)")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--only", nargs="+", help="scenario names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/faults")
    parser.add_argument("--doc", help="write the table to this markdown file")
    parser.add_argument("--resume", action="store_true", help="keep the scenarios already measured (same settings)")
    args = parser.parse_args()
    out = Path(args.out)
    build = Path(args.build) if args.build else default_build(out)
    manifest = read_manifest(build)
    frame = HEADER_BYTES + int(np.prod(manifest["input_shape"])) + TRAILER_BYTES
    elf = build_firmware(build, load_board("qemu-m7")).elf
    chosen = scenarios(frame, args.images)
    if args.only:
        chosen = {name: chosen[name] for name in args.only}
    rows: dict[str, dict[str, Any]] = {}
    saved = out / "results.json"
    if args.resume and saved.is_file():
        previous = json.loads(saved.read_text())
        if previous.get("settings") == {"images": args.images, "seed": args.seed, "build": str(build)}:
            rows = {name: row for name, row in previous["rows"].items() if name in chosen}
    command = "python benchmarks/serial_faults.py" + (f" --build {args.build}" if args.build else "") + (
        f" --images {args.images}")  # fmt: skip
    settings_key = {"images": args.images, "seed": args.seed, "build": str(build)}
    for name, settings in chosen.items():
        if name in rows:
            continue
        rows[name] = run_scenario(build, elf, args.images, settings, args.seed)
        print(f"{name}: {rows[name]}", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"settings": settings_key, "rows": rows}, indent=1) + "\n")
    rows = {name: rows[name] for name in chosen}  # table in scenario order
    table = markdown(rows, args.images, command)
    print(table)
    if args.doc:
        Path(args.doc).write_text(table)
    if any(r["wrong"] for r in rows.values()):
        raise SystemExit("a damaged link produced a wrong result: this is a bug")


if __name__ == "__main__":
    main()
