"""bin/nsdash, the `nsdash` command `make venv` installs: Python without `site`, the same path.

Run for real in a virtual environment made in tmp_path (pyvenv.cfg beside a link to this
interpreter), with a stand-in `nsdash.cli` that reports what the launcher set up: installed
as the Makefile installs it (nsdash.launchscript writes the directories in), and from a checkout.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nsdash import launchscript

REPO = Path(__file__).resolve().parents[2]

REPORT = """\
import os, sys
def run():  # the launcher's entry, as nsdash.cli.run
    print(repr((sys.flags.no_site, "site" in sys.modules, "HOOK_RAN" in os.environ, sys.prefix, sys.path)))
    return 7
"""


def _venv(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(launcher, site-packages, the editable project directory) of a fresh environment."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {Path(sys.executable).resolve().parent}\n")
    python = venv / "bin" / "python"
    python.symlink_to(os.path.realpath(sys.executable))
    v = sys.version_info
    site_packages = venv / "lib" / f"python{v[0]}.{v[1]}" / "site-packages"
    site_packages.mkdir(parents=True)
    project = tmp_path / "project"
    (project / "nsdash").mkdir(parents=True)
    (project / "nsdash" / "__init__.py").write_text("")
    (project / "nsdash" / "cli.py").write_text(REPORT)
    shutil.copy(REPO / "nsdash" / "codebundle.py", project / "nsdash")  # the launcher's first import
    (site_packages / "_editable_impl_nsdash.pth").write_text(f"{project}\n")
    # What site would run, and lines naming nothing: none of it reaches the path.
    (site_packages / "distutils-precedence.pth").write_text("import os; os.environ['HOOK_RAN'] = '1'\n")
    (site_packages / "zz.pth").write_text("# a comment\n\nno-such-directory\n")
    launcher = venv / "bin" / "nsdash"
    launcher.write_text(launchscript.installed((REPO / "bin" / "nsdash").read_text(), str(venv)))
    launcher.chmod(0o755)
    assert launcher.read_text().startswith(f"#!{python} -S\n")  # as the Makefile writes it
    return launcher, site_packages, project


def _checkout(checkout: Path) -> Path:
    """A checkout at CHECKOUT: bin/nsdash as it is, its nsdash.cli.run reporting the path."""
    (checkout / "bin").mkdir(parents=True)
    (checkout / "nsdash").mkdir()
    (checkout / "nsdash" / "__init__.py").write_text("")
    (checkout / "nsdash" / "cli.py").write_text(REPORT)
    shutil.copy(REPO / "nsdash" / "codebundle.py", checkout / "nsdash")
    (checkout / "bin" / "nsdash").write_text((REPO / "bin" / "nsdash").read_text())
    return checkout


def test_launcher_adds_site_directories_without_site(tmp_path):
    launcher, site_packages, project = _venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([str(launcher)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 7, out.stderr  # run()'s status is the command's
    no_site, site_loaded, hook_ran, prefix, path = eval(out.stdout)  # our own repr
    assert no_site == 1 and not site_loaded and not hook_ran
    assert prefix == str(site_packages.parents[2])  # the environment, as site would set it
    # site's order: site-packages, then the .pth directories; nothing that does not exist.
    assert path[-2:] == [str(site_packages), str(project)]
    assert not any("no-such-directory" in p for p in path)
    # Not the script's own directory (bin/, no modules): Python puts it first, the launcher drops it.
    assert str(launcher.parent) not in path and os.path.realpath(launcher.parent) not in path
    assert path[0].endswith(".zip")  # the standard library's zip comes first (no PYTHONPATH here)


def test_pythonpath_still_comes_first(tmp_path):
    """A checkout on PYTHONPATH wins over the installed project, as with site."""
    launcher, _, project = _venv(tmp_path)
    other = tmp_path / "checkout"
    (other / "nsdash").mkdir(parents=True)
    (other / "nsdash" / "__init__.py").write_text("")
    (other / "nsdash" / "cli.py").write_text("def run():\n    print('checkout')\n    return 0\n")
    shutil.copy(REPO / "nsdash" / "codebundle.py", other / "nsdash")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(other)
    out = subprocess.run([str(launcher)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert (out.returncode, out.stdout.strip()) == (0, "checkout"), out.stderr


def test_installed_launcher_looks_nothing_up(tmp_path):
    """The directories are written in at install: no .pth file read, and the checkout's
    way of finding them not in the file (compiled on every run)."""
    launcher, site_packages, project = _venv(tmp_path)
    text = launcher.read_text()
    assert f"SITE = ({str(site_packages.parents[2])!r}, {[str(site_packages), str(project)]!r})\n" in text
    assert "if SITE is None" not in text and "import os" not in text
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(["strace", "-f", "-e", "trace=openat,getdents64", str(launcher)], capture_output=True,
                         text=True, env=env, cwd=tmp_path)
    assert out.returncode == 7, out.stderr[-2000:]
    assert "openat(" in out.stderr and ".pth" not in out.stderr


def test_launcher_from_a_checkout(tmp_path):
    """bin/nsdash run as it is (SITE None): its interpreter's site-packages, then the checkout,
    after PYTHONPATH; the environment is sys.prefix as site would make it; no .pth read."""
    _, site_packages, _ = _venv(tmp_path)
    checkout = _checkout(tmp_path / "checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    python = site_packages.parents[2] / "bin" / "python"
    out = subprocess.run([str(python), "-S", str(checkout / "bin" / "nsdash")], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode == 7, out.stderr
    no_site, site_loaded, hook_ran, prefix, path = eval(out.stdout)  # our own repr
    assert no_site == 1 and not site_loaded and not hook_ran
    assert prefix == str(site_packages.parents[2])
    assert path[-2:] == [str(site_packages), str(checkout)] and str(checkout / "bin") not in path


def test_a_link_to_the_checkouts_launcher_runs_the_checkout(tmp_path):
    """bin/nsdash linked from elsewhere (~/bin, /usr/local/bin): its checkout is where the
    file is, not the link's parent, whose nsdash/ (anyone's) is never imported."""
    _, site_packages, _ = _venv(tmp_path)
    checkout = _checkout(tmp_path / "checkout")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "bin").mkdir(parents=True)
    (elsewhere / "bin" / "nsdash").symlink_to(checkout / "bin" / "nsdash")
    (elsewhere / "nsdash").mkdir()
    (elsewhere / "nsdash" / "__init__.py").write_text("raise SystemExit('foreign nsdash imported')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    python = site_packages.parents[2] / "bin" / "python"
    out = subprocess.run([str(python), "-S", str(elsewhere / "bin" / "nsdash")], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode == 7, out.stderr
    path = eval(out.stdout)[4]  # our own repr
    assert path[-1] == str(checkout) and str(elsewhere) not in path


def test_launchscript_refuses_what_is_not_the_launcher(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nsdash.launchscript", str(tmp_path)], input="print('hi')\n",
                       capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "give it bin/nsdash" in r.stderr
    with pytest.raises(ValueError):
        launchscript.installed("SITE = None\nSITE = None\n", str(tmp_path))


@pytest.mark.parametrize("venv", ["/srv/my venv", "/srv/" + "v" * 250])
def test_launchscript_refuses_an_environment_no_first_line_can_name(venv):
    """A blank splits the first line (the kernel runs '/srv/my' with 'venv/bin/python -S'), and
    the kernel reads 256 bytes of it: one line naming the problem and the fix, nothing written."""
    r = subprocess.run([sys.executable, "-m", "nsdash.launchscript", venv], input=(REPO / "bin" / "nsdash").read_text(),
                       capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "shorter path without blanks" in r.stderr, r.stderr
