"""An image's tree plants hostile files where the image verbs read its hostname and os-release.

The image verbs (`list-images`, `image-status`, `show-image`, their JSON, the
dashboard's images panel through the same reader) read two files a guest
wrote into its tree: /etc/hostname and os-release.  Each image here replaces
one of them with a symlink to a root-only host file holding SECRET (absolute,
a `../` climb, a /proc magic link), a FIFO, /dev/zero, an oversized file, or
text full of escape sequences.  No output may show a byte of the host file or
a raw control character, none may hang (every run has a timeout) or grow
without bound, and a clean image beside them shows its hostname as usual.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
from pathlib import Path

import pytest
from conftest import NSDASH, REPO, TAG

SECRET = "hostsecret"
BOUND = 20  # seconds any one command may take
MAX_RSS_KB = 600 * 1024  # a reader that follows /dev/zero goes far past this
HOSTILE = "h\x1b]2;IMG-TITLE\x07\x1b[>c\x1b]52;c;?\x07\u009b6n\u202e"
# Raw in any output: C0 controls but tab/newline, DEL, C1 as UTF-8, bidi/format characters.
FORBIDDEN = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\x8b-\x8f\xaa-\xae]|\xe2\x81[\xa0-\xaf]")


def _plant(tree: Path, secret: Path, key: str) -> None:
    """Make TREE's etc/hostname or os-release what KEY says; the other file stays plain."""
    etc = tree / "etc"
    climb = "../" * 12 + str(secret).lstrip("/")
    target = {"host": etc / "hostname", "os": etc / "os-release"}[key.split("-")[0]]
    kind = key.split("-", 1)[1]
    if kind == "abs":
        target.symlink_to(secret / target.name)
    elif kind == "climb":
        target.symlink_to(f"{climb}/{target.name}")
    elif kind == "magic":
        target.symlink_to(f"/proc/self/root{secret}/{target.name}")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "zero":
        target.symlink_to("/dev/zero")
    elif kind == "big":
        target.write_bytes(b"x" * (2 << 20))
    elif kind == "text":
        target.write_text(f"{HOSTILE}\n" if target.name == "hostname" else
                          f'ID=ev\x1b[>cil\nPRETTY_NAME="{HOSTILE}"\n')
    else:
        raise AssertionError(key)


KEYS = [f"{f}-{k}" for f in ("host", "os") for k in ("abs", "climb", "magic", "fifo", "zero", "big", "text")]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An image directory: one image per plant plus a clean one; name -> plant key ('' for clean)."""
    secret = tmp_path_factory.mktemp("host") / "root-only"  # the marker is in the files, not the path
    secret.mkdir(mode=0o700)
    (secret / "hostname").write_text(f"{SECRET}\n")
    (secret / "os-release").write_text(f"ID={SECRET}\nPRETTY_NAME={SECRET}\n")
    for p in secret.iterdir():
        p.chmod(0o600)
    home = tmp_path_factory.mktemp("images")
    found = {}
    for key in ["clean", *KEYS]:
        name = f"{TAG}-i-{key}"
        tree = home / name
        (tree / "etc").mkdir(parents=True)
        (tree / "usr/lib").mkdir(parents=True)
        (tree / "etc/hostname").write_text("cleanhost\n")
        (tree / "usr/lib/os-release").write_text('ID=busybox\nPRETTY_NAME="BusyBox"\n')
        if key != "clean":  # the planted file alone: no fallback to usr/lib's os-release
            (tree / ("etc/hostname" if key.startswith("host-") else "usr/lib/os-release")).unlink()
            _plant(tree, secret, key)
        found[name] = "" if key == "clean" else key
    return home, found


def _limit_memory() -> None:
    # The host must survive a reader that does follow /dev/zero: 4 GiB of address space at most.
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def nsdash(home: Path, *args: str) -> subprocess.CompletedProcess:
    """Run nsdash over the image directory HOME, bounded in time and address space."""
    r = subprocess.run([*NSDASH, *args], capture_output=True, timeout=BOUND, cwd=REPO, preexec_fn=_limit_memory,
                       env={**os.environ, "NSDASH_IMAGE_PATH": str(home)})
    out = r.stdout + r.stderr
    assert b"Traceback" not in out, out.decode(errors="replace")
    assert SECRET.encode() not in out, out.decode(errors="replace")
    found = FORBIDDEN.search(out)
    assert found is None, f"{args}: raw {found.group()!r} in its output"
    return r


def test_the_image_list_shows_no_host_byte_and_every_image(images):
    home, found = images
    for args in (["list-images"], ["list-images", "-o", "json"]):
        r = nsdash(home, *args)
        assert r.returncode == 0, r.stderr
        for name in found:
            assert name.encode() in r.stdout  # every image listed, the hostile ones too
    listed = json.loads(nsdash(home, "list-images", "-o", "json").stdout)
    assert isinstance(listed, list)
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < MAX_RSS_KB


def test_status_and_show_of_each_image_show_no_host_byte(images):
    home, found = images
    for name, key in found.items():
        status = nsdash(home, "image-status", name)
        assert status.returncode == 0, status.stderr
        assert name.encode() in status.stdout
        assert nsdash(home, "show-image", name).returncode == 0
        shown = status.stdout.decode()
        if not key:
            assert "Hostname: cleanhost" in shown and "OS: BusyBox" in shown, shown
        elif key == "host-text":
            assert "Hostname: h\\x1b]2;IMG-TITLE\\x07\\x1b[>c\\x1b]52;c;?\\x07\\x9b6n\\u202e" in shown, shown
        elif key == "os-text":
            assert "OS: h\\x1b]2;IMG-TITLE\\x07" in shown, shown
        elif key.startswith("host-"):
            assert "Hostname:" not in shown, shown  # refused: shown as none
        else:
            assert "OS:" not in shown and "Hostname: cleanhost" in shown, shown
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < MAX_RSS_KB


def test_the_images_panels_reader_marks_nothing_of_the_host(images):
    home, found = images
    script = ("import json; from nsdash.machines import images; "
              "print(json.dumps({i.name: [i.hostname, i.os_release] for i in images.discover()}))")
    r = subprocess.run([NSDASH[0], "-c", script], capture_output=True, timeout=BOUND, cwd=REPO,
                       preexec_fn=_limit_memory, env={**os.environ, "NSDASH_IMAGE_PATH": str(home)})
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert SECRET.encode() not in r.stdout + r.stderr
    facts = json.loads(r.stdout)
    assert set(found) <= set(facts)
    for name, key in found.items():
        hostname, release = facts[name]
        if key.startswith("host-") and key != "host-text":
            assert hostname is None, (key, hostname)
        if key.startswith("os-") and key != "os-text":
            assert release == {}, (key, release)
