"""What to mount from a disk image, and where: the Discoverable Partitions Specification.

Pure logic over `read_at(offset, length)`: no loop device, no mount.  An image is

- a GPT (nsdash.system.gpt) whose partitions are found by type UUID: the root
  and /usr partitions of this machine's architecture (the secondary one, x86
  on x86-64, when there is no native root), /home, /srv, /var, /var/tmp (the
  spec's "temporary data" partition), XBOOTLDR at /boot and the ESP at /efi
  (or /boot); with no root partition, a single generic Linux data partition
  is the root, as systemd-nspawn(1) allows.  Bit 63 ("no-auto") leaves a
  partition out (bit 1 for the ESP, UEFI's "no block I/O protocol"), bit 60
  mounts it read-only.  Several root (or /usr) partitions: the one whose label
  carries the highest version wins; for the other kinds the first one does.
  /var is taken whatever its partition UUID (nspawn relaxes the spec's
  machine-ID check: a container's machine ID is not known before it boots).
- or an MBR table with a single bootable partition of type 0x83 (the root),
- or no partition table and one file system spanning the image.

A partition's file system is recognised by its superblock's magic number;
encrypted (LUKS) and unknown ones are refused in one line, as is a GPT with
no root partition.  Verity, signature and swap partitions are not used.
"""

from __future__ import annotations

import os
import re
import stat
import struct

from nsdash.errors import SpecError
from nsdash.system import gpt
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # mypy reads this as True
if TYPE_CHECKING:
    from collections.abc import Callable

# Root and /usr partition types by architecture (uname -m), the Discoverable Partitions Specification's.
ROOT = {
    "x86_64": "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "i686": "44479540-f297-41b2-9af7-d131d5f0458a",
    "aarch64": "b921b045-1df0-41c3-af44-4c6f280d3fae", "armv7l": "69dad710-2ce4-4e3c-b16c-21a1d49abed3",
    "riscv64": "72ec70a6-cf74-40e6-bd49-4bda08e8f224", "loongarch64": "77055800-792c-4f94-b39a-98c91b762bb6",
}
USR = {
    "x86_64": "8484680c-9521-48c6-9c11-b0720656f69e", "i686": "75250d76-8cc6-458e-bd66-bd47cc81a812",
    "aarch64": "b0e01050-ee5f-4390-949a-9101b17104e9", "armv7l": "7d0359a3-02b3-4f0a-865c-654403e70625",
    "riscv64": "beaec34b-8442-439b-a40b-984381ed097d", "loongarch64": "e611c702-575c-4cbe-9a46-434fa0bf7e3f",
}
SECONDARY = {"x86_64": "i686", "aarch64": "armv7l"}  # what such a CPU also runs
HOME = "933ac7e1-2eb4-4f13-b844-0e14e2aef915"
SRV = "3b8f8425-20e0-4f3b-907f-1a25a76f98e8"
VAR = "4d21b016-b534-45c2-a9fb-5c16e091fd2d"
TMP = "7ec6f557-3bc5-4aca-b293-16ef5df639d1"
ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
XBOOTLDR = "bc13c2ff-59e6-4262-a352-b275fd6f7172"
GENERIC = "0fc63daf-8483-4772-8e79-3d69d8477de4"

# The other designators and where each goes; the ESP's place is decided once the root is mounted.
FIXED = ((HOME, "home", "/home"), (SRV, "srv", "/srv"), (VAR, "var", "/var"), (TMP, "tmp", "/var/tmp"),
         (XBOOTLDR, "xbootldr", "/boot"))
MOUNTABLE = ("ext4", "btrfs", "xfs", "squashfs", "erofs", "vfat")
ALWAYS_READ_ONLY = ("squashfs", "erofs")


class ImageError(SpecError):
    """An image nsdash cannot boot; its message is the one line the user sees."""


class Mount(Frozen):
    """One file system of the image and where it goes in the container."""

    designator: str  # root, usr, home, srv, var, tmp, xbootldr, esp
    where: str  # the container path ("" for the ESP: efi_target() decides)
    partition: int | None  # the GPT entry's number; None: the whole image is the file system
    offset: int
    size: int
    fstype: str
    read_only: bool  # the partition asks for it (bit 60) or the file system is read-only by nature


class Dissection(Frozen):
    kind: str  # "gpt" | "mbr" | "filesystem"
    mounts: tuple[Mount, ...]  # parents before children (root first)
    sector_size: int = 512

    @property
    def root(self) -> Mount:
        return self.mounts[0]

    def describe(self) -> list[str]:
        out = []
        for m in self.mounts:
            where = m.where or "/efi or /boot"
            part = f"partition {m.partition}" if m.partition is not None else "whole image"
            out.append(f"{m.designator:9} {where:10} {m.fstype:8} {part}" + (" (ro)" if m.read_only else ""))
        return out


def probe(read_at: Callable[[int, int], bytes], offset: int = 0) -> str | None:
    """The file system at OFFSET by its superblock's magic number: ext4 (ext2 and ext3
    too: the ext4 driver mounts them), btrfs, xfs, squashfs, erofs, vfat; crypto_LUKS
    and swap are named so they can be refused by name; None: nothing known."""
    head = read_at(offset, 4096)
    if head[:6] == b"LUKS\xba\xbe":
        return "crypto_LUKS"
    if head[:4] == b"XFSB":
        return "xfs"
    if head[:4] == b"hsqs":
        return "squashfs"
    if len(head) >= 1082 and head[1080:1082] == b"\x53\xef":
        return "ext4"
    if len(head) >= 1028 and struct.unpack_from("<I", head, 1024)[0] == 0xE0F5E1E2:
        return "erofs"
    if head[4086:4096] in (b"SWAPSPACE2", b"SWAP-SPACE"):
        return "swap"
    if read_at(offset + 0x10040, 8) == b"_BHRfS_M":
        return "btrfs"
    if len(head) >= 512 and head[510:512] == b"\x55\xaa" and (head[54:57] == b"FAT" or head[82:87] == b"FAT32"):
        return "vfat"
    return None


def _version_key(label: str) -> list[tuple[int, int | str]]:
    """Labels compared as versions ("os_10" after "os_9"): digits as numbers, the rest as text."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|\D+", label)]


def _fstype(read_at: Callable[[int, int], bytes], offset: int, what: str, image: str) -> str:
    found = probe(read_at, offset)
    if found == "crypto_LUKS":
        raise ImageError(f"{image}: {what} is encrypted (LUKS), which nsdash does not open",
                         "unlock it and boot a plain copy, or use systemd-nspawn")
    if found not in MOUNTABLE:
        raise ImageError(f"{image}: {what} holds " + (f"a {found} area" if found else "no file system nsdash knows")
                         + f" ({', '.join(MOUNTABLE)})", "format it with one of them (mkfs.ext4 -d TREE, say)")
    return found


def dissect(read_at: Callable[[int, int], bytes], size: int, image: str = "the image",
            arch: str | None = None) -> Dissection:
    """What to mount from the image READ_AT reads (SIZE bytes long); ImageError says why not."""
    if size < 1024:
        raise ImageError(f"{image} is too small to hold a file system ({size} bytes)",
                         "pass a disk image (GPT or a bare file system)")
    try:
        table = gpt.read(read_at, size)
    except gpt.GptError as e:
        raise ImageError(f"{image}: damaged GPT partition table: {e}", "repair it (sfdisk --verify) or rebuild the image") from None
    if table is None:
        if probe(read_at, 0) is None:
            mbr = _from_mbr(read_at, size, image)
            if mbr is not None:
                return mbr
            raise ImageError(f"{image} has no GPT partition table and no file system nsdash knows",
                             f"pass a GPT disk image or a bare file system ({', '.join(MOUNTABLE)})")
        fstype = _fstype(read_at, 0, "its file system", image)
        return Dissection("filesystem", (Mount("root", "/", None, 0, size, fstype, fstype in ALWAYS_READ_ONLY),))
    return _from_table(read_at, table, image, arch or os.uname().machine)


MBR_LINUX = 0x83
MBR_BOOTABLE = 0x80


def _from_mbr(read_at: Callable[[int, int], bytes], size: int, image: str) -> Dissection | None:
    """An MBR (DOS) table: systemd-nspawn(1) boots one whose single bootable partition has type
    0x83 (Linux).  None: sector 0 is no MBR at all."""
    sector0 = read_at(0, 512)
    if len(sector0) < 512 or sector0[510:512] != b"\x55\xaa":
        return None
    entries = [struct.unpack_from("<B3sB3sII", sector0, 446 + 16 * i) for i in range(4)]
    if any(e[0] not in (0, MBR_BOOTABLE) for e in entries) or not any(e[2] for e in entries):
        return None  # not a partition table (a boot sector of something else)
    roots = [(i + 1, e) for i, e in enumerate(entries) if e[2] == MBR_LINUX and e[0] == MBR_BOOTABLE and e[5]]
    if len(roots) != 1:
        raise ImageError(f"{image} has an MBR partition table but " + ("no" if not roots else "more than one")
                         + " bootable Linux (type 0x83) partition", "mark the root partition bootable (sfdisk -A)")
    number, (_, _, _, _, start, count) = roots[0]
    if (start + count) * 512 > size or start == 0:
        raise ImageError(f"{image}: MBR partition {number} lies outside the image", "check it with 'sfdisk --verify'")
    fstype = _fstype(read_at, start * 512, f"partition {number} (root)", image)
    return Dissection("mbr", (Mount("root", "/", number, start * 512, count * 512, fstype, fstype in ALWAYS_READ_ONLY),))


def _auto(p: gpt.Partition) -> bool:
    return not p.has(gpt.FLAG_NO_BLOCK_IO if p.type_uuid == ESP else gpt.FLAG_NO_AUTO)


def _pick(parts: list[gpt.Partition], by_version: bool) -> gpt.Partition | None:
    if not parts:
        return None
    if by_version:
        return max(parts, key=lambda p: (_version_key(p.name), -p.number))
    return parts[0]


def _from_table(read_at: Callable[[int, int], bytes], table: gpt.Table, image: str, arch: str) -> Dissection:
    if not table.protective_mbr:
        raise ImageError(f"{image}: the GPT has no protective MBR, so the kernel would not see its partitions",
                         "rewrite the table with sfdisk or sgdisk (they write one)")
    usable = [p for p in table.partitions if _auto(p)]
    chosen: list[tuple[str, str, gpt.Partition]] = []
    root = usr = None
    for candidate in (arch, SECONDARY.get(arch)):
        if candidate and candidate in ROOT:
            root = _pick([p for p in usable if p.type_uuid == ROOT[candidate]], True)
            if root is not None:
                usr = _pick([p for p in usable if p.type_uuid == USR[candidate]], True)
                break
    if root is None:
        generic = [p for p in table.partitions if p.type_uuid == GENERIC]
        if len(generic) == 1 and _auto(generic[0]):
            root = generic[0]  # nspawn: "a GPT with a single partition of type 0fc63daf-..."
    if root is None:
        native = ROOT.get(arch, "?")
        raise ImageError(f"{image} has a GPT partition table but no root partition for {arch} (type {native})",
                         "give the root file system's partition that type (sfdisk --part-type), or boot a tree with -D")
    chosen.append(("root", "/", root))
    if usr is not None:
        chosen.append(("usr", "/usr", usr))
    for type_uuid, designator, where in FIXED:
        p = _pick([q for q in usable if q.type_uuid == type_uuid], False)
        if p is not None:
            chosen.append((designator, where, p))
    esp = _pick([p for p in usable if p.type_uuid == ESP], False)
    if esp is not None:
        chosen.append(("esp", "", esp))
    mounts = []
    for designator, where, p in chosen:
        fstype = _fstype(read_at, p.offset, f"partition {p.number} ({designator})", image)
        mounts.append(Mount(designator, where, p.number, p.offset, p.size, fstype,
                            p.has(gpt.FLAG_READ_ONLY) or fstype in ALWAYS_READ_ONLY))
    mounts.sort(key=lambda m: (m.where != "/", m.where == "", m.where.count("/")))  # parents first, the ESP last
    return Dissection("gpt", tuple(mounts), table.sector_size)


def efi_target(exists_empty: Callable[[str], bool], has_xbootldr: bool) -> str | None:
    """Where the ESP goes, as the spec says: /efi if the image has it (empty), else /boot
    when that is there and empty and no XBOOTLDR partition takes it; else nowhere."""
    if exists_empty("/efi"):
        return "/efi"
    if not has_xbootldr and exists_empty("/boot"):
        return "/boot"
    return None


def check_kind(mode: int, image: str) -> None:
    """--image takes a regular file or a block device (st_mode MODE); IMAGE names it in the
    ImageError for anything else (a directory is what -D boots; a FIFO would hang a read)."""
    if stat.S_ISDIR(mode):
        raise ImageError(f"--image: {image} is a directory", f"boot a tree with -D {image}")
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        raise ImageError(f"--image: {image} is neither a regular file nor a block device", "pass a disk image file")


def dissect_open(fd: int, image: str) -> Dissection:
    """dissect() of the --image open on FD (IMAGE: its name in messages), after check_kind();
    a block device's size is where its end is."""
    st = os.fstat(fd)
    check_kind(st.st_mode, image)
    size = st.st_size if stat.S_ISREG(st.st_mode) else os.lseek(fd, 0, os.SEEK_END)
    return dissect(reader(fd), size, image)


def reader(fd: int) -> Callable[[int, int], bytes]:
    """A read_at over an open file (short reads past the end are fine: callers check lengths)."""
    def read_at(offset: int, length: int) -> bytes:
        return os.pread(fd, length, offset)
    return read_at
