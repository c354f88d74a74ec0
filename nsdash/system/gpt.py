"""The GUID partition table of a disk image, read as the UEFI specification lays it out.

Pure logic over a `read_at(offset, length)` function, so unit tests feed it
crafted tables and --image feeds it the image file (never a tool's output):

- the protective MBR (a partition of type 0xEE: the kernel only scans a GPT
  behind one),
- the header at LBA 1 for 512- or 4096-byte sectors, its CRC32 (taken with the
  CRC field zeroed) and the partition entry array's CRC32,
- the backup header in the last sector when the primary one is damaged,
- each used entry: type and partition UUID (mixed-endian on disk), first and
  last LBA, the 64 attribute bits, the UTF-16 name.

Anything inconsistent raises GptError with one line saying what; an image
with no GPT signature at all is not an error (read() returns None: it may hold
a bare file system).  Sizes are bounded so a hostile image cannot make us read
or allocate much.
"""

from __future__ import annotations

import struct
import zlib

from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # mypy reads this as True
if TYPE_CHECKING:
    from collections.abc import Callable

SIGNATURE = b"EFI PART"
SECTOR_SIZES = (512, 4096)
HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # the 92 bytes the CRC covers at least
ENTRY = struct.Struct("<16s16sQQQ72s")
MAX_ENTRIES = 1024  # the UEFI minimum array is 128 entries; mkosi and sfdisk write 128
MAX_ARRAY = 1 << 20  # bytes of the partition entry array we are willing to read
MBR_TYPE_PROTECTIVE = 0xEE

# Attribute bits (UEFI and the Discoverable Partitions Specification).
FLAG_REQUIRED = 1 << 0
FLAG_NO_BLOCK_IO = 1 << 1  # the ESP's "do not auto-mount" (UEFI 12.3.3)
FLAG_GROWFS = 1 << 59
FLAG_READ_ONLY = 1 << 60
FLAG_NO_AUTO = 1 << 63


class GptError(ValueError):
    """A GPT that is there but cannot be trusted (bad checksum, entries outside the disk...)."""


class Partition(Frozen):
    """One used entry of the partition array."""

    number: int  # 1-based index in the array, as the kernel numbers partitions (loop0p1)
    type_uuid: str  # lower-case, dashed
    uuid: str
    offset: int  # bytes from the start of the image
    size: int  # bytes
    attributes: int
    name: str

    def has(self, flag: int) -> bool:
        return bool(self.attributes & flag)


class Table(Frozen):
    sector_size: int
    disk_uuid: str
    partitions: tuple[Partition, ...]
    protective_mbr: bool  # the kernel's partition scan needs one
    from_backup: bool = False  # the primary header was damaged; this is the backup's view


def guid(raw: bytes) -> str:
    """A GUID as stored on disk (first three fields little-endian) in its usual text form."""
    a, b, c = struct.unpack_from("<IHH", raw)
    return f"{a:08x}-{b:04x}-{c:04x}-{raw[8:10].hex()}-{raw[10:16].hex()}"


def guid_bytes(text: str) -> bytes:
    """The on-disk form of a GUID's text (guid()'s inverse)."""
    hexits = text.replace("-", "")
    raw = bytes.fromhex(hexits)
    if len(raw) != 16:
        raise ValueError(f"not a GUID: {text!r}")
    a, b, c = struct.unpack(">IHH", raw[:8])
    return struct.pack("<IHH", a, b, c) + raw[8:]


def has_protective_mbr(sector0: bytes) -> bool:
    """Sector 0 ends in 55 AA and one of its four entries has type 0xEE."""
    if len(sector0) < 512 or sector0[510:512] != b"\x55\xaa":
        return False
    return any(sector0[446 + 16 * i + 4] == MBR_TYPE_PROTECTIVE for i in range(4))


def read(read_at: Callable[[int, int], bytes], size: int) -> Table | None:
    """The image's GPT, None when it has no GPT signature, GptError when it has a broken one."""
    for sector in SECTOR_SIZES:
        if size < 2 * sector or read_at(sector, 8) != SIGNATURE:
            continue
        protective = has_protective_mbr(read_at(0, 512))
        try:
            return _table(read_at, size, sector, 1, protective)
        except GptError as primary:
            last = size // sector - 1
            try:
                return _table(read_at, size, sector, last, protective, backup=True)
            except GptError:
                raise primary from None
    return None


def _table(read_at: Callable[[int, int], bytes], size: int, sector: int, lba: int,
           protective: bool, backup: bool = False) -> Table:
    raw = read_at(lba * sector, sector)
    if len(raw) < HEADER.size or raw[:8] != SIGNATURE:
        raise GptError("no GPT header" + (" in the last sector (backup)" if backup else ""))
    (_, revision, header_size, header_crc, _, my_lba, _alternate, _first, _last, disk,
     entries_lba, count, entry_size, entries_crc) = HEADER.unpack_from(raw)
    if revision >> 16 != 1:
        raise GptError(f"GPT revision {revision >> 16}.{revision & 0xFFFF} is not 1.x")
    if not HEADER.size <= header_size <= sector:
        raise GptError(f"GPT header size {header_size} is outside 92..{sector}")
    zeroed = raw[:16] + b"\0\0\0\0" + raw[20:header_size]
    if zlib.crc32(zeroed) != header_crc:
        raise GptError("GPT header checksum mismatch")
    if my_lba != lba:
        raise GptError(f"GPT header says it is at LBA {my_lba}, found at {lba}")
    if entry_size < ENTRY.size or entry_size % 8 or count > MAX_ENTRIES or count * entry_size > MAX_ARRAY:
        raise GptError(f"GPT partition array of {count} entries of {entry_size} bytes is not one nsdash reads")
    start = entries_lba * sector
    length = count * entry_size
    if entries_lba < 1 or start + length > size:
        raise GptError("GPT partition array lies outside the image")
    array = read_at(start, length)
    if len(array) != length or zlib.crc32(array) != entries_crc:
        raise GptError("GPT partition array checksum mismatch")
    parts: list[Partition] = []
    for i in range(count):
        type_raw, uuid_raw, first, last, attrs, name_raw = ENTRY.unpack_from(array, i * entry_size)
        if type_raw == b"\0" * 16:
            continue  # an unused entry
        if first > last or (last + 1) * sector > size:
            raise GptError(f"partition {i + 1} (LBA {first}..{last}) lies outside the image")
        name = name_raw.decode("utf-16-le", "replace").split("\0", 1)[0]
        parts.append(Partition(number=i + 1, type_uuid=guid(type_raw), uuid=guid(uuid_raw),
                               offset=first * sector, size=(last - first + 1) * sector,
                               attributes=attrs, name=name))
    ordered = sorted(parts, key=lambda p: p.offset)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.offset + a.size > b.offset:
            raise GptError(f"partitions {a.number} and {b.number} overlap")
    return Table(sector_size=sector, disk_uuid=guid(disk), partitions=tuple(parts),
                 protective_mbr=protective, from_backup=backup)
