"""A Raspberry Pi firmware stand-in for qemu-system-aarch64: autoboot.txt, tryboot, watchdog."""
