"""The `mcuformer` command line. Heavy imports happen inside the subcommands so that --help is instant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from mcuformer import __version__
from mcuformer.boards import DEFAULT_BOARD, EMULATOR_BOARD
from mcuformer.errors import McuformerError

if TYPE_CHECKING:
    from mcuformer.codegen.compiler import Budgets
    from mcuformer.search.run import SearchConfig
    from mcuformer.train import TrainConfig

DEMO_PRESET = "fmnist-small"
# The names of codegen.lower.SCHEDULES (kept literal so --help does not import the compiler; a test pins them).
SCHEDULE_NAMES = ("fused", "stream", "blocks", "integrated", "layer", "inplace", "naive")
SCHEDULE_HELP = (
    "fused (default): per-token blocks written over the residual stream and a decomposed patch embedding; "
    "stream: fused blocks, and the image arrives over serial one patch row at a time (never whole on the device); "
    "blocks: the same without the decomposition; integrated: per-token blocks writing a new token matrix; "
    "layer: layer by layer, element-wise ops in place, attention row by row; inplace: layer by layer with whole "
    "score matrices; naive: layer by layer, nothing in place"
)
DEMO_DEVICE_IMAGES = 1000  # ~0.11 s per image over the emulated UART: all 10,000 take ~20 min


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage block is one `--help` away) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _latency(text: str) -> str:
    """A time like 10ms, 0.5s or 800us (checked here, converted by the search's constraints)."""
    from mcuformer.search.cost import parse_latency

    try:
        parse_latency(text)
    except McuformerError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _add_budget_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--optimize", choices=("speed", "memory"), default="speed",
                   help="speed (default): the fastest plan whose SRAM and flash fit the budgets (per block, the "
                   "attention kernel that normalises once costs tokens x width bytes more); memory: the least "
                   "SRAM")  # fmt: skip
    p.add_argument("--sram", help="SRAM budget, e.g. 64KB (default: the board's)")
    p.add_argument("--flash", help="flash budget, e.g. 128KB (default: the board's)")


def _count(text: str) -> int:
    """A count of epochs, images, steps...: an integer >= 1 (zero would silently do nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _positive(text: str) -> float:
    value = _float(text, "a number > 0")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _probability(text: str) -> float:
    value = _float(text, "a probability in [0, 1]")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default), cifar10, cifar100, imagefolder")
    p.add_argument("--data-dir", help="dataset folder (CIFAR binary version, ImageFolder root)")
    p.add_argument("--epochs", type=_count, help="training epochs (default: the recipe's, see docs/search.md)")
    p.add_argument("--batch-size", type=_count, help="images per step (default: the recipe's)")
    p.add_argument("--lr", type=_positive, help="peak AdamW learning rate (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=_count, help="train on the first N training images only")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")


def _add_search_args(p: argparse.ArgumentParser, with_train_args: bool = True) -> None:
    p.add_argument("--budget", help="peak SRAM budget: 320KB, 0.5MB or bytes (default: the board's SRAM)")
    p.add_argument("--flash", help="flash budget (default: the board's flash)")
    p.add_argument("--board", default=DEFAULT_BOARD, help="target board (see `mcuformer boards`)")
    p.add_argument("--space", help="search-space TOML file (default: the board's shipped space)")
    p.add_argument(
        "--latency",
        type=_latency,
        help="latency limit per inference, e.g. 10ms: instructions predicted "
        "by the cost model at the board's clock and assumed cycles per instruction (boards/*.toml)",
    )
    p.add_argument("--max-instructions", type=_count, help="instruction limit per inference (cost model)")
    p.add_argument("--cutmix", type=_probability, help="CutMix probability per batch (default: the preset's)")
    if with_train_args:
        p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default), cifar10, cifar100, "
                       "imagefolder")  # fmt: skip
        p.add_argument("--data-dir", help="dataset folder (CIFAR binary version, ImageFolder root)")
        p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")


def _train_config(args: argparse.Namespace) -> TrainConfig:
    from mcuformer.train import TrainConfig

    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    return TrainConfig(**{k: v for k, v in given.items() if v is not None}, seed=args.seed,
                       train_limit=args.train_limit, device=args.device)  # fmt: skip


def cmd_train(args: argparse.Namespace) -> None:
    from mcuformer.arch import load_arch
    from mcuformer.train import train

    arch = load_arch(args.arch)
    out = Path(args.out or f"runs/{arch.name or 'model'}")
    result = train(arch, args.dataset, out, _train_config(args), args.data_dir, resume=not args.restart)
    print(f"wrote {out / 'model.pt'}: {arch.name}, {arch.num_params():,} parameters, "
          f"fp32 test accuracy {100 * result.metrics['fp32_accuracy']:.2f}%")  # fmt: skip


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise McuformerError(f"expected comma-separated numbers, got {text!r}") from None


def _budgets(args: argparse.Namespace) -> Budgets:
    """--optimize, --sram and --flash (sizes as in `search --budget`); budgets beyond the board's are refused."""
    from mcuformer.codegen.compiler import Budgets
    from mcuformer.search.cost import parse_size

    return Budgets(args.optimize, None if args.sram is None else parse_size(args.sram),
                   None if args.flash is None else parse_size(args.flash))  # fmt: skip


def cmd_compile(args: argparse.Namespace) -> None:
    from mcuformer.boards import load_board
    from mcuformer.codegen.compiler import compile_model
    from mcuformer.device.platformio import write_build_project

    board = load_board(args.board)  # once: the compiler and the PlatformIO project get the same Board
    model = Path(args.model)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise McuformerError(f"-o {args.out} is a file; the build goes into a folder: name a new or existing folder")
    if model.suffix.lower() == ".onnx":
        from mcuformer.codegen.onnx.frontend import compile_onnx

        out = Path(args.out or f"build/{model.stem}")
        compiled = compile_onnx(model, board, out, calib=args.calib, calib_dir=args.data_dir,
                                calib_images=args.calib_images, pixel_mean=_floats(args.pixel_mean),
                                pixel_std=_floats(args.pixel_std), name=args.name, schedule=args.schedule,
                                budgets=_budgets(args))  # fmt: skip
    else:
        out = Path(args.out or f"build/{model.resolve().parent.name}")
        compiled = compile_model(args.model, board, out, name=args.name, schedule=args.schedule,
                                 budgets=_budgets(args))  # fmt: skip
    project = write_build_project(out, board)
    print(compiled.report.summary())
    if args.verbose:
        print(compiled.report.op_table())
        print((out / "plan_trade.md").read_text(), end="")
    print(f"wrote {out}/src (C), {out}/memory_report.json, {project} (PlatformIO)")


def cmd_export(args: argparse.Namespace) -> None:
    from mcuformer.codegen.onnx.export import export_model

    export_model(args.model, args.onnx, qdq=args.qdq)
    print(f"wrote {args.onnx} ({'int8 QDQ' if args.qdq else 'fp32'} ONNX, opset 17); "
          f"compile it with `mcuformer compile {args.onnx} --board {DEFAULT_BOARD}`")  # fmt: skip


def cmd_plan(args: argparse.Namespace) -> None:
    from mcuformer.boards import load_board
    from mcuformer.codegen.compiler import plan_target
    from mcuformer.codegen.plan_plot import plot_plan
    from mcuformer.codegen.variants import trade_table

    choice, name = plan_target(args.target, load_board(args.board), args.schedule, _budgets(args))
    chosen = choice.chosen
    print(chosen.report.op_table())
    print(chosen.report.summary())
    print(trade_table(choice))
    plot = Path(args.plot or f"{Path(name).stem}_plan.png")
    plot_plan(chosen.plan, plot, f"{name} on {args.board}: arena {chosen.plan.arena_bytes:,} B")
    print(f"wrote {plot}")


def cmd_profile(args: argparse.Namespace) -> None:
    from mcuformer.profile import profile_build, write_profile

    profile = profile_build(args.build, args.board, port=args.port, kernels=args.kernels)
    print(profile.table())
    out = write_profile(profile, args.json or Path(args.build) / f"profile_{args.board}_{profile.kernels}.json")
    print(f"wrote {out}")


def cmd_eval(args: argparse.Namespace) -> None:
    from mcuformer.evaluate import evaluate_build

    if args.board == "host":
        raise McuformerError("`host` is not a board: leave out --board to run the generated C on this machine")
    result = evaluate_build(args.build, args.board, args.dataset, args.n, args.data_dir, port=args.port)
    print(result.table())
    if result.logits_exact < 1.0:
        raise McuformerError("device logits differ from the int8 reference: this is a bug, please report it")


def cmd_peers(args: argparse.Namespace) -> None:
    import numpy as np

    from mcuformer.checkpoint import load_model
    from mcuformer.peers.compare import compare, peer_table
    from mcuformer.train import load_for_arch

    model_file = load_model(args.model)
    dataset = args.dataset or model_file.dataset.name
    classes = model_file.dataset.classes
    calibration = load_for_arch(dataset, "train", model_file.arch, args.data_dir, classes)
    test = load_for_arch(dataset, "test", model_file.arch, args.data_dir, classes)
    row = compare(model_file, calibration.subset(np.arange(min(512, len(calibration.images)))),
                  test.subset(np.arange(min(args.n, len(test.images)))), args.board)  # fmt: skip
    print(peer_table([row]))


def cmd_flash(args: argparse.Namespace) -> None:
    from mcuformer.boards import load_board
    from mcuformer.device.platformio import PROJECT_DIR, run_pio, write_project

    board = load_board(args.board)
    if board.is_emulated:
        raise McuformerError(f"{board.name} is emulated, there is nothing to flash: `mcuformer eval BUILD --board "
                             f"{board.name}` builds the firmware and runs it under QEMU")  # fmt: skip
    project = Path(args.build) / PROJECT_DIR
    if (
        not (project / "platformio.ini").is_file()
        or f"[env:{board.name}]" not in (project / "platformio.ini").read_text()
    ):
        project = write_project(args.build, [board])
    print(f"building and uploading {args.build} to {board.name} with PlatformIO ({board.upload_protocol})")
    elf = run_pio(project, board, "upload")
    print(f"flashed {elf}; check it with `mcuformer eval {args.build} --port <serial port>`")


def cmd_boards(args: argparse.Namespace) -> None:
    from mcuformer.boards import board_names, load_board

    for name in board_names():
        b = load_board(name)
        print(f"{b.name:<12} {b.core:<10} SRAM {b.sram_bytes // 1024:>4} KB  flash {b.flash_bytes // 1024:>5} KB  "
              f"{b.description}")  # fmt: skip


def _search_config(args: argparse.Namespace, out: Path, preset: str) -> SearchConfig:
    from mcuformer.search.run import SearchConfig

    return SearchConfig(out=out, sram_budget=args.budget, flash_budget=args.flash, board=args.board,
                        dataset=args.dataset, data_dir=args.data_dir, preset=preset, space_file=args.space,
                        max_instructions=args.max_instructions, latency=args.latency, seed=args.seed,
                        device=args.device, cutmix=args.cutmix,
                        finish_random=getattr(args, "finish_random", False),
                        supernet_from=getattr(args, "supernet_from", None),
                        retrain=getattr(args, "retrain", False))  # fmt: skip


def cmd_search(args: argparse.Namespace) -> None:
    import os

    from mcuformer.search.run import run_search

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun: data-parallel supernet training
        import torch.distributed as dist

        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        if args.device == "cuda":
            args.device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    budget = args.budget or "board"
    out = Path(args.out or f"runs/search-{args.board}-{str(budget).lower()}")
    result = run_search(_search_config(args, out, args.preset), resume=args.resume)
    if result:
        print((out / "summary.md").read_text())
        print(f"wrote {out}/model.pt (compile it with `mcuformer compile {out}/model.pt --board {args.board}`), "
              f"{out}/search.json, {out}/pareto.png, {out}/summary.md")  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> None:
    from mcuformer.boards import load_board
    from mcuformer.codegen.compiler import compile_model
    from mcuformer.device.platformio import write_build_project
    from mcuformer.evaluate import evaluate_build

    board = load_board(args.board)  # checked before any training starts
    out = Path(args.out)
    if args.arch:  # a fixed architecture instead of the search
        from mcuformer.arch import load_arch
        from mcuformer.train import train

        arch = load_arch(args.arch)
        config = _train_config(args)
        print(f"[1/4] training {arch.name} on {args.dataset} for {config.epochs} epochs -> {out}/model.pt")
        train(arch, args.dataset, out, config, args.data_dir)
        name = arch.name.replace("-", "_")
    else:
        from mcuformer.search.run import run_search

        print(f"[1/4] quick architecture search on {args.dataset} for {args.board} "
              f"(SRAM {args.budget or 'of the board'}) -> {out}/model.pt")  # fmt: skip
        run_search(_search_config(args, out, "quick"), resume=True)
        print((out / "summary.md").read_text())
        name = "searched"
    print(f"[2/4] compiling for {args.board} -> {out}/build")
    compiled = compile_model(out / "model.pt", board, out / "build", name=name)
    write_build_project(out / "build", board)
    print(compiled.report.summary())
    print("[3/4] running the generated C on the host over the test set")
    result = evaluate_build(out / "build", None, args.dataset, args.n, args.data_dir)
    print(result.table())
    if result.logits_exact < 1.0:
        raise McuformerError("generated C differs from the int8 reference: this is a bug, please report it")
    emulator = board.emulator or EMULATOR_BOARD
    print(f"[4/4] firmware on the emulated board (QEMU {emulator}), over serial, "
          f"first {args.device_images} test images")  # fmt: skip
    result = evaluate_build(out / "build", emulator, args.dataset, args.device_images, args.data_dir)
    print(result.table())
    if result.logits_exact < 1.0:
        raise McuformerError("device logits differ from the int8 reference: this is a bug, please report it")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mcuformer",
        description="Vision transformers on microcontrollers: train, quantize to int8, compile to C, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"mcuformer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a fixed architecture and write model.pt",
        description="Train a ViT; checkpoints every epoch and resumes after an interrupt.",
    )
    p.add_argument("--arch", required=True, help="preset name (micro, fmnist-small, ...) or JSON file")
    p.add_argument("--out", help="run folder (default runs/<arch name>)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "compile",
        help="compile model.pt to int8 C for a board",
        description="Quantize model.pt, plan its memory and write C sources + a memory report.",
    )
    p.add_argument("model", help="model.pt written by train or search, or a ViT exported to ONNX (model.onnx)")
    p.add_argument("--board", default=DEFAULT_BOARD, help="target board (see `mcuformer boards`)")
    p.add_argument("--calib", help="ONNX only: calibrate on this dataset's training images (fashion-mnist, cifar10, "
                   "cifar100, imagefolder); default: the ranges stored by `mcuformer export`")  # fmt: skip
    p.add_argument("--data-dir", help="ONNX only: folder of the --calib dataset")
    p.add_argument("--calib-images", type=_count, default=512, help="ONNX only: calibration images (default 512)")
    p.add_argument("--pixel-mean", help="ONNX only: the model's input is (pixel - mean) / std with pixels in [0, 1]; "
                   "comma-separated per channel (default 0, or what the graph computes itself)")  # fmt: skip
    p.add_argument("--pixel-std", help="ONNX only: see --pixel-mean (default 1)")
    p.add_argument("-o", "--out", help="build folder (default build/<run name>)")
    p.add_argument("--name", help="model name in the generated C")
    p.add_argument("-v", "--verbose", action="store_true", help="print the per-op memory table")
    p.add_argument("--schedule", choices=SCHEDULE_NAMES, default="fused", help=SCHEDULE_HELP)
    _add_budget_args(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser(
        "export",
        help="export model.pt to ONNX (fp32, or int8 as QDQ)",
        description="Write the model as ONNX opset 17 (input: pixels in [0, 1]); `compile` reads it back.",
    )
    p.add_argument("model", help="model.pt written by train or search")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--qdq", action="store_true", help="the int8 model as QuantizeLinear/DequantizeLinear + float ops")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "eval",
        help="accuracy of a build: fp32, int8 reference and generated C",
        description="Run a compiled build on test images and compare it with the int8 reference.",
    )
    p.add_argument("build", help="build folder written by compile")
    p.add_argument(
        "--board",
        help="an emulated board to run the firmware on, started and stopped here (qemu-m7, qemu-l432kc, ...; see "
        "`mcuformer boards`); default, without --port: the generated C built with gcc for this machine",
    )
    p.add_argument("--port", help="serial port of a flashed board, e.g. /dev/ttyACM0")
    p.add_argument("--dataset", help="dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("-n", type=_count, help="first N test images only")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "plan",
        help="print and plot the memory plan of an architecture or model.pt",
        description="Per-op table of live buffers, the peak and what sets it, and a timeline plot (PNG/SVG).",
    )
    p.add_argument("target", help="model.pt, an architecture preset or an architecture JSON file")
    p.add_argument("--board", default=DEFAULT_BOARD, help="board whose budget the report compares with")
    p.add_argument("--plot", help="timeline plot file, .png or .svg (default <name>_plan.png)")
    p.add_argument("--schedule", choices=SCHEDULE_NAMES, default="fused", help=SCHEDULE_HELP)
    _add_budget_args(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "profile",
        help="per-op instructions (QEMU) or cycles (board) and instructions per MAC of a build",
        description="Run one inference on the board and print each op's MACs, count, count per MAC and share.",
    )
    p.add_argument("build", help="build folder written by compile")
    p.add_argument("--board", default=EMULATOR_BOARD, help="board to run on (default %(default)s, emulated)")
    p.add_argument("--port", help="serial port of a real board running this build's firmware")
    p.add_argument("--kernels", choices=("portable", "dsp"), help="kernel library (default: the board's)")
    p.add_argument("--json", help="output JSON (default build/profile_<board>_<kernels>.json)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "peers",
        help="the same model in TensorFlow Lite Micro: arena vs our SRAM, .tflite vs our flash, int8 accuracy",
        description="Convert model.pt to a full-int8 .tflite (the same 512 calibration images), run it in "
        "tflite-micro's interpreter and compare with our plan and int8 reference (needs mcuformer[peers]).",
    )
    p.add_argument("model", help="model.pt written by train or search")
    p.add_argument("--board", default=DEFAULT_BOARD, help="board whose plan gives our SRAM and flash")
    p.add_argument("--dataset", help="dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("-n", type=_count, default=1000, help="test images both int8 models classify (default 1000)")
    p.set_defaults(func=cmd_peers)

    p = sub.add_parser(
        "flash",
        help="build the firmware with PlatformIO and upload it to a board",
        description="Runs PlatformIO's upload for the build's env of the board (stock platform, needs internet "
        "the first time PlatformIO installs it).",
    )
    p.add_argument("build", help="build folder written by compile")
    p.add_argument("--board", default=DEFAULT_BOARD, help="the connected board (default %(default)s)")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser(
        "search",
        help="find the most accurate ViT that fits a board (memory-constrained one-shot NAS) and write model.pt",
        description="Train a weight-sharing supernet, search it under the exact SRAM/flash plan of the compiler, "
        "finetune and calibrate the winner. Writes model.pt, search.json, pareto.png and summary.md.",
    )
    _add_search_args(p)
    p.add_argument("--preset", choices=("quick", "standard", "full"), default="quick",
                   help="quick: the demo, ~10 minutes on 2 CPU cores; standard: ~100 minutes on 2 CPU cores, "
                   "more accurate; full: the benchmark setting (a GPU)")  # fmt: skip
    p.add_argument("--out", help="run folder (default runs/search-<board>-<budget>)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out (after an interrupt)")
    p.add_argument("--finish-random", action="store_true",
                   help="also finetune and quantize the random-search winner (out/random/model.pt)")  # fmt: skip
    p.add_argument("--supernet-from", metavar="RUN", help="reuse the trained supernet of a finished search over the "
                   "same space (train once under the loosest budget, then search each budget)")  # fmt: skip
    p.add_argument("--retrain", action="store_true", help="train the winner from scratch at the training "
                   "recipe for as many epochs as supernet and finish together, instead of finetuning inherited "
                   "weights")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("boards", help="list the boards mcuformer targets")
    p.set_defaults(func=cmd_boards)

    p = sub.add_parser(
        "demo",
        help="train, compile and check a Fashion-MNIST model end to end",
        description="The README demo: train -> compile -> C on the test set, exactness checked.",
    )
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--arch", help=f"train this fixed architecture (e.g. {DEMO_PRESET}) instead of searching one")
    _add_search_args(p, with_train_args=False)
    p.add_argument("-n", type=_count, help="first N test images on the host (default: all)")
    p.add_argument("--device-images", type=_count, default=DEMO_DEVICE_IMAGES,
                   help="first N test images on the emulated device (default %(default)s)")  # fmt: skip
    _add_train_args(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except McuformerError as err:
        print(f"mcuformer: error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError) as err:
        # A path the user gave that cannot be used the way the command needs (e.g. -o naming an existing file).
        print(f"mcuformer: error: {err.strerror}: {err.filename} (check the paths given)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mcuformer: interrupted (training resumes from its last checkpoint)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
