"""Mount option strings split into mount(2) flags and file-system data: the one place.

`--tmpfs=/x:ro,nosuid,size=1M`, the OPTIONS of --overlay and the same in
.nspawn files are written the way mount(8) takes them: generic words (ro,
nosuid, noexec, relatime, ...) are mount flags; everything else is handed to
the file system as its data.  systemd-nspawn splits them the same way
(mount_option_mangle with libmount's Linux option map); handing `ro` to tmpfs
as data makes mount(2) fail with EINVAL.  Pure and standard library only.
"""

from __future__ import annotations

from nsdash.system.syscalls import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_STRICTATIME

MS_SYNCHRONOUS = 16
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_SILENT = 32768
MS_RELATIME = 1 << 21
MS_LAZYTIME = 1 << 25

# word -> (flag, set it?) as in mount(8)'s generic file-system independent options
FLAG_WORDS: dict[str, tuple[int, bool]] = {
    "ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True), "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True), "exec": (MS_NOEXEC, False),
    "sync": (MS_SYNCHRONOUS, True), "async": (MS_SYNCHRONOUS, False),
    "dirsync": (MS_DIRSYNC, True),
    "mand": (MS_MANDLOCK, True), "nomand": (MS_MANDLOCK, False),
    "noatime": (MS_NOATIME, True), "atime": (MS_NOATIME, False),
    "nodiratime": (MS_NODIRATIME, True), "diratime": (MS_NODIRATIME, False),
    "relatime": (MS_RELATIME, True), "norelatime": (MS_RELATIME, False),
    "strictatime": (MS_STRICTATIME, True), "nostrictatime": (MS_STRICTATIME, False),
    "lazytime": (MS_LAZYTIME, True), "nolazytime": (MS_LAZYTIME, False),
    "silent": (MS_SILENT, True), "loud": (MS_SILENT, False),
    "defaults": (0, True),
}


def split(options: str, flags: int = 0) -> tuple[int, str]:
    """(FLAGS with OPTIONS' flag words applied, the remaining words joined as data)."""
    data: list[str] = []
    for word in options.split(","):
        if not word:
            continue
        known = FLAG_WORDS.get(word)
        if known is None:
            data.append(word)
        elif known[1]:
            flags |= known[0]
        else:
            flags &= ~known[0]
    return flags, ",".join(data)
