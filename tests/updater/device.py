"""A whole simulated device in a temp directory: GPT disk image, roots, simulated firmware.

The disk is a sparse GPT file laid out as fleetcore.layout says (config, boot_a/b, system_a/b,
data by PARTLABEL), made with sfdisk, its config partition formatted with mkfs.vfat and
filled with mtools, slot a written with dd. The config partition mount, /data, the image
root and /proc are directories. ``power_on`` plays the firmware; ``agent_start`` builds the
updater as a fresh process would.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from fleetcore.layout import CONFIG_LABEL, LABELS, Slot, slot_label
from fleetcore.release import ImageName
from fleetcore.run import run
from updater import autoboot
from updater.config import load_config
from updater.disk import BootDisk, PartitionIO
from updater.engine import Engine, EngineResult
from updater.firmware import open_firmware
from updater.firmware.simulated import firmware_boot
from updater.health import HealthChecker, RoleHealthHook
from updater.paths import Roots
from updater.queue import EventQueue
from updater.space import Reserve
from updater.state import StateStore

MIB = 1 << 20
# (label, size in MiB) in the shared partition order (fleetcore.layout), small for tests.
LAYOUT = tuple(zip(LABELS, (32, 2, 2, 8, 8, 4), strict=True))
BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def make_disk(path: Path) -> None:
    total = sum(size for _, size in LAYOUT) + 2
    with path.open("wb") as handle:
        handle.truncate(total * MIB)
    lines = ["label: gpt", "unit: sectors"]
    for label, size in LAYOUT:
        kind = BASIC_DATA if label.startswith((CONFIG_LABEL, "boot")) else LINUX
        lines.append(f"size={size * 2048}, type={kind}, name={label}")
    run(["sfdisk", "--quiet", str(path)], input="\n".join(lines).encode() + b"\n")


def format_config(disk: BootDisk, files: dict[str, bytes], scratch: Path) -> None:
    """mkfs.vfat the config partition inside the image and copy files in with mtools."""
    part = disk.partitions["config"]
    sectors = part.offset // 512
    run(
        [
            "mkfs.vfat",
            "-n",
            "CONFIG",
            "--offset",
            str(sectors),
            str(disk.path),
            str(part.size // 1024),
        ]
    )
    for name, data in files.items():
        src = scratch / name
        src.write_bytes(data)
        run(["mcopy", "-i", f"{disk.path}@@{part.offset}", str(src), f"::{name}"])


def read_config(disk: BootDisk, name: str, dest: Path) -> bytes:
    part = disk.partitions["config"]
    run(["mcopy", "-o", "-i", f"{disk.path}@@{part.offset}", f"::{name}", str(dest)])
    return dest.read_bytes()


def dd(image: bytes, disk: Path, offset: int, scratch: Path) -> None:
    src = scratch / "image.bin"
    src.write_bytes(image)
    run(
        [
            "dd",
            f"if={src}",
            f"of={disk}",
            "bs=64K",
            "oflag=seek_bytes",
            f"seek={offset}",
            "conv=notrunc",
            "status=none",
        ]
    )
    src.unlink()


@dataclass
class SimDevice:
    base: Path
    roots: Roots
    disk_path: Path

    @classmethod
    def at(cls, base: Path) -> SimDevice:
        """The device created earlier in ``base``, as another process sees it."""
        return cls(base, cls.roots_in(base), base / "disk.img")

    @staticmethod
    def roots_in(base: Path) -> Roots:
        return Roots(
            root=base / "root",
            data=base / "data",
            boot_config=base / "boot-config",
            device_tree=base / "device-tree",
            sys=base / "sys",
            proc=base / "proc",
        )

    @classmethod
    def create(
        cls,
        base: Path,
        *,
        images: dict[ImageName, bytes],
        version: str,
        root_json: bytes,
        release_dir: Path | None = None,
        settings: dict[str, object] | None = None,
    ) -> SimDevice:
        base.mkdir(parents=True, exist_ok=True)
        roots = cls.roots_in(base)
        for path in (roots.etc, roots.data, roots.boot_config, roots.boot_id_file.parent):
            path.mkdir(parents=True, exist_ok=True)
        disk_path = base / "disk.img"
        make_disk(disk_path)
        disk = BootDisk.open(disk_path)
        for image, data in images.items():
            dd(data, disk_path, disk.partitions[f"{image.value}_a"].offset, base)
        initial = autoboot.Autoboot(committed=Slot.A).render()
        format_config(disk, {"autoboot.txt": initial}, base)
        # The config partition "mounted": what the firmware and the device see.
        read_config(disk, "autoboot.txt", roots.autoboot)
        (roots.etc / "version").write_text(version + "\n")
        (roots.etc / "root.json").write_bytes(root_json)
        if release_dir is not None:
            # What fleet-image assemble puts on the data partition: slot A's chunk indexes.
            slot_a = roots.slot_dir(Slot.A)
            slot_a.mkdir(parents=True)
            for image in ImageName:
                name = f"{image.value}.index.json"
                (slot_a / name).write_bytes((release_dir / name).read_bytes())
        config: dict[str, object] = {
            "disk": str(disk_path),
            "hardware": "qemu",
            "firmware": {"backend": "simulated", "reboot_command": ["true"]},
            "health": {"docker": "off", "deadline_s": 60},
            "transfer": {
                "backoff_initial_s": 0.01,
                "backoff_max_s": 0.05,
                "retries": 2,
                "checkpoint_bytes": 256 * 1024,
                "min_free_data_bytes": 0,
            },
        }
        config.update(settings or {})
        (roots.etc / "updater.yaml").write_text(yaml.safe_dump(config))
        device = cls(base, roots, disk_path)
        device.power_on()
        return device

    def power_on(self, *, requested_reboot: bool = True) -> None:
        """The firmware starts: consume the tryboot flag, pick a partition, new boot id.

        ``requested_reboot=False`` is a power cut: the volatile tryboot flag is lost.
        """
        firmware_boot(self.roots.boot_config, requested_reboot=requested_reboot)
        self.roots.boot_id_file.write_text(str(uuid.uuid4()) + "\n")

    def engine(
        self, *, role_hook: RoleHealthHook | None = None, store: StateStore | None = None
    ) -> Engine:
        config = load_config(self.roots)
        reserve = Reserve(self.roots.reserve_file)
        events = EventQueue(
            self.roots.queue_dir,
            max_items=config.queue_max_items,
            reserve=reserve,
        )
        return Engine(
            roots=self.roots,
            config=config,
            firmware=open_firmware(config.firmware, self.roots),
            events=events,
            health=HealthChecker(config.health, self.roots, role_hook=role_hook),
            store=store,
            reserve=reserve,
        )

    def settle(self, engine_factory=None, *, max_boots: int = 12) -> list[EngineResult]:
        """Resume, and power on again after every requested reboot, until nothing is left."""
        outcomes = []
        for _ in range(max_boots):
            engine = (engine_factory or self.engine)()
            outcome = engine.resume()
            outcomes.append(outcome)
            if outcome is not EngineResult.REBOOTING:
                return outcomes
            self.power_on()
        raise AssertionError(f"no stable state after {max_boots} boots: {outcomes}")

    def slot_sha256(self, slot: Slot, image: ImageName, size: int) -> str:
        disk = BootDisk.open(self.disk_path)
        part = disk.partitions[slot_label(image.value, slot)]
        with PartitionIO(part, writable=False) as reader:
            return hashlib.sha256(reader.read(0, size)).hexdigest()

    def booted(self) -> tuple[Slot, bool]:
        state = open_firmware(load_config(self.roots).firmware, self.roots).boot_state()
        return state.slot, state.tryboot

    def committed(self) -> Slot:
        return autoboot.read(self.roots.autoboot).committed

    def add_health_hook(self, name: str, script: str, *, required: bool = True) -> None:
        folder = self.roots.fleet / "health.d" / ("required.d" if required else "wanted.d")
        folder.mkdir(parents=True, exist_ok=True)
        hook = folder / name
        hook.write_text("#!/bin/sh\n" + script + "\n")
        hook.chmod(0o755)
