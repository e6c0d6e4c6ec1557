"""SCons builder of the offline platform: arm-none-eabi tools, the board's CPU flags, one ELF."""

from SCons.Script import DefaultEnvironment  # type: ignore[import-not-found]

env = DefaultEnvironment()
board = env.BoardConfig()
cpu = [f"-mcpu={board.get('build.cpu')}", "-mthumb"]
fpu = board.get("build.fpu", "")
if fpu:
    cpu += [f"-mfpu={fpu}", f"-mfloat-abi={board.get('build.float_abi', 'hard')}"]

env.Replace(
    AR="arm-none-eabi-ar",
    AS="arm-none-eabi-as",
    CC="arm-none-eabi-gcc",
    CXX="arm-none-eabi-g++",
    OBJCOPY="arm-none-eabi-objcopy",
    RANLIB="arm-none-eabi-ranlib",
    SIZETOOL="arm-none-eabi-size",
    SIZEPROGREGEXP=r"^(?:\.isr_vector|\.text|\.rodata|\.data|\.ARM\.exidx)\s+(\d+).*",
    SIZEDATAREGEXP=r"^(?:\.data|\.arena|\.bss|\.stack)\s+(\d+).*",
    SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
)
env.Append(
    ASFLAGS=cpu,
    CCFLAGS=cpu,
    LINKFLAGS=[*cpu, "-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections", "-Wl,--no-warn-rwx-segments"],
)
if board.get("build.ldscript", ""):
    env.Replace(LDSCRIPT_PATH=board.get("build.ldscript"))

program = env.BuildProgram()
env.AddPostAction(program, env.VerboseAction("$SIZEPRINTCMD", "Checking size $PROGPATH"))
env.Default(program)
