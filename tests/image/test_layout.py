import pytest

from fleetcore.layout import Slot, autoboot_txt
from image.errors import InputError
from image.layout import ALIGN, MIB, Sizes, cmdline_txt, plan, sfdisk_script

DESIGN_AUTOBOOT = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"


def test_sizes_parse_units_and_defaults():
    sizes = Sizes.parse("boot=128M,system=2G")
    assert (sizes.config, sizes.boot, sizes.system, sizes.data) == (32, 128, 2048, 256)
    assert Sizes.parse("") == Sizes()


@pytest.mark.parametrize("text", ["boot=12X", "swap=1G", "boot", "system=1M"])
def test_sizes_parse_rejects(text):
    with pytest.raises(InputError):
        Sizes.parse(text)


def test_plan_orders_and_aligns_partitions():
    layout = plan(Sizes(config=4, boot=16, system=24, data=16), seed="s")
    labels = [p.label for p in layout.partitions]
    assert labels == ["config", "boot_a", "boot_b", "system_a", "system_b", "data"]
    pos = ALIGN
    for part in layout.partitions:
        assert part.start == pos and part.start % ALIGN == 0
        pos = part.end
    assert layout.disk_size == pos + ALIGN
    assert layout.get("system_b").size == 24 * MIB


def test_plan_ids_depend_only_on_seed():
    assert plan(Sizes(), seed="1.0:5") == plan(Sizes(), seed="1.0:5")
    assert plan(Sizes(), seed="1.0:5").disk_uuid != plan(Sizes(), seed="1.0:6").disk_uuid


def test_sfdisk_script_names_every_partition():
    script = sfdisk_script(plan(Sizes(), seed="s"))
    assert script.startswith("label: gpt\n")
    for label in ("config", "boot_a", "boot_b", "system_a", "system_b", "data"):
        assert f'name="{label}"' in script


def test_autoboot_matches_design():
    assert autoboot_txt() == DESIGN_AUTOBOOT
    assert autoboot_txt(Slot.B).splitlines()[2] == "boot_partition=3"


def test_cmdline_replaces_root_arguments_only():
    base = "console=tty1 root=/dev/mmcblk0p2 rootfstype=ext4 rw fsck.repair=yes rootwait quiet\n"
    assert cmdline_txt(base, Slot.B, "erofs") == (
        "console=tty1 quiet root=PARTLABEL=system_b rootfstype=erofs ro rootwait\n"
    )
