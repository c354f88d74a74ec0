"""The GPT reader (nsdash.system.gpt) and the Discoverable Partitions policy
(nsdash.launcher.dissect) on crafted images held in memory: tables written here
byte by byte with their CRC32s, file systems reduced to their magic numbers."""

from __future__ import annotations

import struct
import zlib

import pytest

from nsdash.launcher import dissect
from nsdash.launcher.dissect import ImageError
from nsdash.system import gpt

MIB = 1 << 20
ROOT64 = dissect.ROOT["x86_64"]
USR64 = dissect.USR["x86_64"]
ROOT32 = dissect.ROOT["i686"]


def _fs(kind: str) -> tuple[int, bytes]:
    """(offset in the partition, bytes) that make KIND's superblock magic."""
    return {"ext4": (1080, b"\x53\xef"), "xfs": (0, b"XFSB"), "squashfs": (0, b"hsqs"),
            "luks": (0, b"LUKS\xba\xbe"), "btrfs": (0x10040, b"_BHRfS_M"),
            "erofs": (1024, struct.pack("<I", 0xE0F5E1E2)), "swap": (4086, b"SWAPSPACE2")}[kind]


def make_image(parts: list[dict], size: int = 16 * MIB, sector: int = 512, entries: int = 128,
               protective: bool = True) -> bytearray:
    """A disk image with a primary and a backup GPT holding PARTS (each: type, first, last
    (LBAs), attrs, name, fs) and the file systems' magic numbers."""
    img = bytearray(size)
    if protective:
        img[446 + 4] = 0xEE
        img[510:512] = b"\x55\xaa"
    array = bytearray(entries * 128)
    for i, p in enumerate(parts):
        number = p.get("number", i + 1)
        name = p.get("name", "").encode("utf-16-le").ljust(72, b"\0")
        struct.pack_into("<16s16sQQQ72s", array, (number - 1) * 128, gpt.guid_bytes(p["type"]),
                         bytes(range(i, i + 16)), p["first"], p["last"], p.get("attrs", 0), name)
        if p.get("fs"):
            off, magic = _fs(p["fs"])
            start = p["first"] * sector + off
            img[start:start + len(magic)] = magic
    last_lba = size // sector - 1
    array_sectors = len(array) // sector
    for my_lba, alt_lba, entries_lba in ((1, last_lba, 2), (last_lba, 1, last_lba - array_sectors)):
        img[entries_lba * sector:entries_lba * sector + len(array)] = array
        header = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, my_lba, alt_lba,
                                       2 + array_sectors, last_lba - array_sectors - 1, bytes(16), entries_lba,
                                       entries, 128, zlib.crc32(array)))
        struct.pack_into("<I", header, 16, zlib.crc32(header))
        img[my_lba * sector:my_lba * sector + 92] = header
    return img


def reader(img: bytearray):
    return lambda offset, length: bytes(img[offset:offset + length])


def table(img: bytearray) -> gpt.Table | None:
    return gpt.read(reader(img), len(img))


def parts_of(img: bytearray) -> dissect.Dissection:
    return dissect.dissect(reader(img), len(img), "test.raw", arch="x86_64")


ROOT_PART = {"type": ROOT64, "first": 2048, "last": 10239, "name": "root", "fs": "ext4"}


# ---------------------------------------------------------------- gpt


def test_reads_entries_with_types_offsets_attributes_and_names():
    img = make_image([ROOT_PART, {"type": dissect.SRV, "first": 10240, "last": 12287, "attrs": gpt.FLAG_READ_ONLY,
                                  "name": "Server Data", "fs": "xfs"}])
    t = table(img)
    assert t is not None and t.sector_size == 512 and t.protective_mbr and not t.from_backup
    root, srv = t.partitions
    assert (root.number, root.type_uuid, root.offset, root.size, root.name) == (1, ROOT64, 2048 * 512, 8192 * 512,
                                                                                 "root")
    assert srv.has(gpt.FLAG_READ_ONLY) and not srv.has(gpt.FLAG_NO_AUTO) and srv.name == "Server Data"


def test_guid_text_round_trips_through_the_mixed_endian_disk_form():
    raw = gpt.guid_bytes(ROOT64)
    assert raw[:4] == bytes.fromhex("e3bc684f")  # the first field is little-endian on disk
    assert gpt.guid(raw) == ROOT64


def test_no_signature_is_no_table_not_an_error():
    assert table(bytearray(4 * MIB)) is None


def test_damaged_primary_header_falls_back_to_the_backup():
    img = make_image([ROOT_PART])
    img[512 + 40] ^= 0xFF  # first usable LBA: the header's CRC no longer matches
    t = table(img)
    assert t is not None and t.from_backup and t.partitions[0].type_uuid == ROOT64


def test_both_headers_damaged_is_an_error_naming_the_checksum():
    img = make_image([ROOT_PART])
    img[512 + 40] ^= 0xFF
    img[len(img) - 512 + 40] ^= 0xFF
    with pytest.raises(gpt.GptError, match="header checksum"):
        table(img)


def test_a_changed_entry_fails_the_array_checksum():
    img = make_image([ROOT_PART])
    img[1024 + 32] ^= 0x01  # the root's first LBA in the primary array
    img[len(img) - 512 - 128 * 128 + 32] ^= 0x01  # and in the backup's
    with pytest.raises(gpt.GptError, match="array checksum"):
        table(img)


def test_a_partition_past_the_end_is_refused():
    img = make_image([{**ROOT_PART, "last": 10 ** 9}])
    with pytest.raises(gpt.GptError, match="outside the image"):
        table(img)


def test_overlapping_partitions_are_refused():
    img = make_image([ROOT_PART, {"type": dissect.HOME, "first": 10000, "last": 12000}])
    with pytest.raises(gpt.GptError, match="overlap"):
        table(img)


def test_an_oversized_entry_array_is_not_read():
    img = make_image([ROOT_PART])
    header = bytearray(img[512:512 + 92])
    struct.pack_into("<I", header, 80, 1 << 20)  # a million entries
    struct.pack_into("<I", header, 16, 0)
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    img[512:512 + 92] = header
    img[len(img) - 512:] = bytes(512)  # no backup either
    with pytest.raises(gpt.GptError, match="not one nsdash reads"):
        table(img)


def test_4096_byte_sectors():
    img = make_image([{**ROOT_PART, "first": 256, "last": 1279}], sector=4096, size=32 * MIB)
    t = table(img)
    assert t is not None and t.sector_size == 4096 and t.partitions[0].offset == 256 * 4096


def test_protective_mbr_detection():
    assert gpt.has_protective_mbr(bytes(make_image([ROOT_PART])[:512]))
    assert not gpt.has_protective_mbr(bytes(512))


# ---------------------------------------------------------------- dissect


def test_every_designator_goes_to_its_place_parents_first():
    parts = [ROOT_PART,
             {"type": dissect.ESP, "first": 10240, "last": 11263, "fs": "ext4"},
             {"type": dissect.TMP, "first": 11264, "last": 12287, "fs": "ext4"},
             {"type": dissect.VAR, "first": 12288, "last": 13311, "fs": "ext4"},
             {"type": dissect.HOME, "first": 13312, "last": 14335, "fs": "btrfs"},
             {"type": USR64, "first": 14336, "last": 18431, "fs": "erofs"},
             {"type": dissect.SRV, "first": 18432, "last": 19455, "fs": "xfs"},
             {"type": dissect.XBOOTLDR, "first": 19456, "last": 20479, "fs": "ext4"}]
    d = parts_of(make_image(parts, size=12 * MIB))
    assert d.kind == "gpt"
    assert [(m.designator, m.where) for m in d.mounts] == [
        ("root", "/"), ("usr", "/usr"), ("home", "/home"), ("srv", "/srv"), ("var", "/var"), ("xbootldr", "/boot"),
        ("tmp", "/var/tmp"), ("esp", "")]  # /var before /var/tmp, the ESP (placed later) last
    usr = next(m for m in d.mounts if m.designator == "usr")
    assert usr.fstype == "erofs" and usr.read_only  # read-only by nature
    assert next(m for m in d.mounts if m.designator == "home").fstype == "btrfs"


def test_no_auto_leaves_a_partition_out_and_read_only_marks_it():
    d = parts_of(make_image([ROOT_PART,
                             {"type": dissect.HOME, "first": 10240, "last": 11263, "fs": "ext4",
                              "attrs": gpt.FLAG_NO_AUTO},
                             {"type": dissect.SRV, "first": 11264, "last": 12287, "fs": "ext4",
                              "attrs": gpt.FLAG_READ_ONLY}]))
    assert [(m.designator, m.read_only) for m in d.mounts] == [("root", False), ("srv", True)]


def test_the_esp_honours_its_own_no_block_io_bit_not_bit_63():
    esp = {"type": dissect.ESP, "first": 10240, "last": 11263, "fs": "ext4"}
    assert "esp" in [m.designator for m in parts_of(make_image([ROOT_PART, {**esp, "attrs": gpt.FLAG_NO_AUTO}])).mounts]
    hidden = parts_of(make_image([ROOT_PART, {**esp, "attrs": gpt.FLAG_NO_BLOCK_IO}]))
    assert [m.designator for m in hidden.mounts] == ["root"]


def test_the_root_with_the_highest_version_label_wins():
    d = parts_of(make_image([{**ROOT_PART, "name": "os_9"},
                             {"type": ROOT64, "first": 10240, "last": 12287, "name": "os_10", "fs": "ext4"},
                             {"type": ROOT64, "first": 12288, "last": 14335, "name": "os_11", "fs": "ext4",
                              "attrs": gpt.FLAG_NO_AUTO}]))
    assert d.root.partition == 2


def test_the_secondary_architecture_is_used_without_a_native_root():
    d = parts_of(make_image([{**ROOT_PART, "type": ROOT32},
                             {"type": USR64, "first": 10240, "last": 12287, "fs": "ext4"}]))
    assert d.root.partition == 1 and [m.designator for m in d.mounts] == ["root"]  # not x86-64's /usr


def test_a_single_generic_linux_partition_is_the_root():
    d = parts_of(make_image([{**ROOT_PART, "type": dissect.GENERIC}]))
    assert d.root.partition == 1


def test_no_root_partition_is_one_line_naming_the_type():
    img = make_image([{**ROOT_PART, "type": dissect.HOME}])
    with pytest.raises(ImageError, match=f"no root partition for x86_64 \\(type {ROOT64}\\)"):
        parts_of(img)


def test_encrypted_and_unknown_file_systems_are_refused_by_name():
    with pytest.raises(ImageError, match="encrypted"):
        parts_of(make_image([{**ROOT_PART, "fs": "luks"}]))
    with pytest.raises(ImageError, match="partition 1 \\(root\\) holds no file system nsdash knows"):
        parts_of(make_image([{**ROOT_PART, "fs": None}]))
    with pytest.raises(ImageError, match="a swap area"):
        parts_of(make_image([{**ROOT_PART, "fs": "swap"}]))


def test_a_gpt_without_protective_mbr_is_refused():
    with pytest.raises(ImageError, match="protective MBR"):
        parts_of(make_image([ROOT_PART], protective=False))


def test_a_damaged_table_is_one_line():
    img = make_image([ROOT_PART])
    img[512 + 40] ^= 0xFF
    img[len(img) - 512 + 40] ^= 0xFF
    with pytest.raises(ImageError, match="damaged GPT partition table: GPT header checksum mismatch"):
        parts_of(img)


def test_a_bare_file_system_spans_the_image():
    img = bytearray(4 * MIB)
    img[1080:1082] = b"\x53\xef"
    d = parts_of(img)
    assert d.kind == "filesystem" and d.root.partition is None and d.root.size == len(img)
    img = bytearray(4 * MIB)
    img[:4] = b"hsqs"
    assert parts_of(img).root.read_only


def test_nothing_known_and_too_small_are_refused():
    with pytest.raises(ImageError, match="no GPT partition table and no file system"):
        parts_of(bytearray(4 * MIB))
    with pytest.raises(ImageError, match="too small"):
        parts_of(bytearray(100))


def test_efi_target_follows_the_spec():
    assert dissect.efi_target(lambda p: True, False) == "/efi"
    assert dissect.efi_target(lambda p: p == "/boot", False) == "/boot"
    assert dissect.efi_target(lambda p: p == "/boot", True) is None  # XBOOTLDR has /boot
    assert dissect.efi_target(lambda p: False, False) is None


def _mbr(entries: list[tuple[int, int, int, int]], size: int = 8 * MIB) -> bytearray:
    """An MBR image: ENTRIES are (status, type, first LBA, sectors); ext4 magic in each."""
    img = bytearray(size)
    for i, (status, kind, first, count) in enumerate(entries):
        struct.pack_into("<B3sB3sII", img, 446 + 16 * i, status, b"", kind, b"", first, count)
        img[first * 512 + 1080:first * 512 + 1082] = b"\x53\xef"
    img[510:512] = b"\x55\xaa"
    return img


def test_an_mbr_with_one_bootable_linux_partition_is_the_root():
    d = parts_of(_mbr([(0, 0x82, 2048, 2048), (0x80, 0x83, 4096, 8192)]))
    assert d.kind == "mbr" and d.root.partition == 2 and d.root.offset == 4096 * 512 and d.root.fstype == "ext4"


def test_an_mbr_without_or_with_two_bootable_linux_partitions_is_refused():
    with pytest.raises(ImageError, match="no bootable Linux"):
        parts_of(_mbr([(0, 0x83, 2048, 2048)]))
    with pytest.raises(ImageError, match="more than one bootable Linux"):
        parts_of(_mbr([(0x80, 0x83, 2048, 2048), (0x80, 0x83, 4096, 2048)]))



def test_an_image_is_a_regular_file_or_a_block_device_one_rule_for_both_routes(tmp_path):
    """dissect.check_kind/dissect_open: what spawn -i checks (options) and what the supervisor's
    attach checks again (image) say the same, from one place."""
    import os

    fifo = tmp_path / "fifo.raw"
    os.mkfifo(fifo)
    with pytest.raises(ImageError) as e:
        dissect.check_kind(os.stat(fifo).st_mode, str(fifo))
    assert (str(e.value), e.value.hint) == (f"--image: {fifo} is neither a regular file nor a block device",
                                            "pass a disk image file")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(ImageError) as e:
            dissect.dissect_open(fd, str(tmp_path))
    finally:
        os.close(fd)
    assert (str(e.value), e.value.hint) == (f"--image: {tmp_path} is a directory", f"boot a tree with -D {tmp_path}")
    zeros = tmp_path / "zeros.raw"
    zeros.write_bytes(bytes(4 * MIB))
    fd = os.open(zeros, os.O_RDONLY)
    try:
        with pytest.raises(ImageError, match="has no GPT partition table"):
            dissect.dissect_open(fd, str(zeros))  # a regular file: on to the dissection
    finally:
        os.close(fd)
