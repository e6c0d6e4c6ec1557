"""The PlatformIO project of a build: every firmware source copied in, one env per use.

- `[env:<board>]` for a real board: the stock PlatformIO platform (e.g. ststm32, needs PlatformIO's registry the
  first time), no framework, our startup code and linker script; `mcuformer flash` runs its upload.
- `[env:<emulated board>]` (qemu-m7): a local platform (firmware/platformio/platform) and the Debian
  arm-none-eabi toolchain, so it builds fully offline.
The offline pieces PlatformIO would otherwise download (the toolchain package, tool-scons) are made once under
~/.cache/mcuformer/platformio from what is installed here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import SCons

from mcuformer.boards import EMULATOR_BOARD, Board, load_board
from mcuformer.codegen.build_dir import BuildDir, read_manifest
from mcuformer.codegen.host_build import KERNEL_INCLUDE, kernel_sources
from mcuformer.device.build import BSP_DIR, RUNTIME_DIR
from mcuformer.device.errors import FirmwareBuildError
from mcuformer.device.linker import write_linker_script
from mcuformer.firmware import FIRMWARE_DIR

PROJECT_DIR = "platformio"
OFFLINE_PLATFORM = FIRMWARE_DIR / "platformio" / "platform"
CACHE = Path(os.environ.get("MCUFORMER_CACHE", Path.home() / ".cache" / "mcuformer")) / "platformio"
TOOLCHAIN_TOOLS = ("gcc", "g++", "cpp", "ar", "as", "ld", "nm", "objcopy", "objdump", "ranlib", "size", "strip")
SCONS_VERSION = "4.41101.0"
C_FLAGS = ("-std=c11", "-O2", "-ffunction-sections", "-fdata-sections", "-fno-common", "-Wall", "-Wextra", "-Werror")


def env_name(board: Board) -> str:
    return board.name


def _copy_tree(files: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, dest / f.name)


def ensure_offline_packages() -> tuple[Path, Path]:
    """(PlatformIO core dir with tool-scons, toolchain package dir) built from the local installation."""
    toolchain = CACHE / "toolchain-gccarmnoneeabi"
    (toolchain / "bin").mkdir(parents=True, exist_ok=True)
    for tool in TOOLCHAIN_TOOLS:
        target, link = shutil.which(f"arm-none-eabi-{tool}"), toolchain / "bin" / f"arm-none-eabi-{tool}"
        if target and not link.exists():
            link.symlink_to(target)
    manifest = {"name": "toolchain-gccarmnoneeabi", "version": "1.120201.0", "system": ["linux_x86_64"],
                "description": "the system's arm-none-eabi-gcc"}  # fmt: skip
    (toolchain / "package.json").write_text(json.dumps(manifest))
    core = CACHE / "core"
    scons = core / "packages" / "tool-scons"
    scons.mkdir(parents=True, exist_ok=True)
    if not (scons / "SCons").exists():
        (scons / "SCons").symlink_to(Path(SCons.__file__).resolve().parent)
    (scons / "scons.py").write_text("import sys\n\nimport SCons.Script\n\nsys.exit(SCons.Script.main())\n")
    (scons / "package.json").write_text(json.dumps({"name": "tool-scons", "version": SCONS_VERSION, "system": "*"}))
    spec = {"owner": "platformio", "id": None, "name": "tool-scons", "requirements": None, "uri": None}
    (scons / ".piopm").write_text(json.dumps({"type": "tool", "name": "tool-scons", "version": SCONS_VERSION,
                                              "spec": spec}))  # fmt: skip
    for stale in (core / "packages").glob("*.pio-link"):  # left by failed symlink installs; they break later runs
        stale.unlink()
    return core, toolchain


def _board_json(board: Board, ldscript: str) -> dict[str, object]:
    cpu = board.cpu_flags
    return {
        "name": board.description,
        "url": "https://github.com/mcuformer",
        "vendor": "mcuformer",
        "frameworks": [],
        "build": {
            "cpu": cpu.mcpu,
            "fpu": cpu.fpu or "",
            "float_abi": cpu.float_abi or "soft",
            "mcu": board.name,
            "f_cpu": f"{board.clock_hz}L",
            "ldscript": ldscript,
        },  # fmt: skip
        "upload": {"maximum_size": board.flash_bytes, "maximum_ram_size": board.sram_bytes, "protocol": "custom"},
    }


def write_build_project(build_dir: str | Path, board: str | Board) -> Path:
    """The PlatformIO project `compile` leaves beside the C: an env for the target board and one for the emulator
    (`pio run -e qemu-m7` runs the model without hardware)."""
    target = load_board(board)
    emulator = load_board(target.emulator or EMULATOR_BOARD)
    return write_project(build_dir, [target] if target.name == emulator.name else [target, emulator])


def write_project(build_dir: str | Path, boards: list[Board] | None = None) -> Path:
    """Write build_dir/platformio: sources, linker scripts, board files and platformio.ini. Returns the folder."""
    build = Path(build_dir)
    manifest = read_manifest(build)
    if boards is None:
        boards = [load_board(manifest["board"])]
    project = build / PROJECT_DIR
    if project.exists():
        shutil.rmtree(project / "src", ignore_errors=True)
    src = project / "src"
    variants = sorted({board.kernels for board in boards})
    for variant in variants:  # each env compiles its board's variant only (build_src_filter below)
        _copy_tree(kernel_sources(variant), src / f"kernels_{variant}")
    _copy_tree(sorted(KERNEL_INCLUDE.glob("*.h")), src / "kernels" / "include")
    _copy_tree(sorted(BuildDir(build).src.glob("*.[ch]")), src / "model")
    _copy_tree(sorted(RUNTIME_DIR.glob("*.[ch]")), src / "runtime")
    core, toolchain = ensure_offline_packages()
    # core_dir: the offline env's build tool (scons) lives there, so a plain `pio run -e qemu-m7` in this folder
    # works without network; the stock platform of a real board's env is installed there on first use.
    sections = ["; Generated by mcuformer: `pio run -e <env>` builds, `-t upload` flashes a real board.",
                "[platformio]", "boards_dir = boards", f"core_dir = {core}", ""]  # fmt: skip
    for board in boards:
        if board.bsp is None:
            raise FirmwareBuildError(f"board {board.name} has no board support package yet")
        _copy_tree(sorted((BSP_DIR / board.bsp).glob("*.[ch]")), src / "bsp" / board.bsp)
        ldscript = f"link_{board.name}.ld"
        write_linker_script(board, project / ldscript)
        includes = ["src/model", "src/kernels/include", "src/runtime", f"src/bsp/{board.bsp}"]
        flags = [*C_FLAGS, f'-DMCF_BOARD_NAME=\\"{board.name}\\"', f"-DMCF_BOARD_CLOCK_HZ={board.clock_hz}u",
                 "-DMCF_DEBUG_COMMANDS=0", "-DMCF_PROFILE=1", *BuildDir(build).kernel_flags(),
                 *(f"-I{i}" for i in includes)]  # fmt: skip
        other_bsps = [f"-<bsp/{p.name}/>" for p in BSP_DIR.iterdir() if p.is_dir() and p.name != board.bsp]
        other_bsps += [f"-<kernels_{v}/>" for v in variants if v != board.kernels]
        lines = [f"[env:{env_name(board)}]"]
        if board.is_emulated or not board.platformio_board:
            board_id = f"mcuformer_{board.name.replace('-', '_')}"
            (project / "boards").mkdir(parents=True, exist_ok=True)
            (project / "boards" / f"{board_id}.json").write_text(json.dumps(_board_json(board, ldscript), indent=2))
            lines += [f"platform = symlink://{OFFLINE_PLATFORM}", f"board = {board_id}",
                      f"platform_packages = toolchain-gccarmnoneeabi@symlink://{toolchain}"]  # fmt: skip
        else:
            cpu = list(board.cpu_flags.gcc_flags())
            lines += [f"platform = {board.platformio_platform or 'ststm32'}", f"board = {board.platformio_board}",
                      f"board_build.ldscript = {ldscript}", f"upload_protocol = {board.upload_protocol or 'stlink'}",
                      f"monitor_speed = {board.uart.baud if board.uart else 115200}",
                      "build_unflags = -nostartfiles", "extra_scripts = post:extra_link.py"]  # fmt: skip
            flags = [*cpu, *flags]
            (project / "extra_link.py").write_text(
                'Import("env")\n'
                f"env.Append(LINKFLAGS={cpu + ['-nostartfiles', '--specs=nano.specs', '-Wl,--gc-sections']!r})\n"
            )
        lines += ["build_flags = " + " ".join(flags), "build_src_filter = +<*> " + " ".join(other_bsps), ""]
        sections += lines
    (project / "platformio.ini").write_text("\n".join(sections))
    return project


def _pio() -> list[str]:
    exe = Path(sys.executable).with_name("pio")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("pio") or shutil.which("platformio")
    if found is None:
        raise FirmwareBuildError("PlatformIO is not installed: pip install platformio")
    return [found]


def run_pio(project: Path, board: Board, target: str | None = None, timeout: float = 900) -> Path:
    """`pio run -e <board> [-t target]` in the project (its platformio.ini names the core dir); returns the ELF."""
    env = {k: v for k, v in os.environ.items() if k != "PLATFORMIO_CORE_DIR"}  # the project's core_dir decides
    command = [*_pio(), "run", "-d", str(project), "-e", env_name(board)]
    if target:
        command += ["-t", target]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FirmwareBuildError(f"PlatformIO did not finish within {timeout:.0f} s: {' '.join(command)}") from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip().splitlines()
        overflow = [line for line in out if "overflowed by" in line]
        if overflow:
            raise FirmwareBuildError(f"firmware for {board.name} does not fit: {overflow[0].split('ld: ')[-1]}")
        raise FirmwareBuildError(f"PlatformIO failed for env {env_name(board)}:\n" + "\n".join(out[-25:]))
    return project / ".pio" / "build" / env_name(board) / "firmware.elf"
