"""Running compiled models on devices: firmware build (arm-none-eabi-gcc), linker scripts from board descriptors,
the serial protocol, the serial link and the QEMU runner."""
