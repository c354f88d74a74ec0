"""bin/nsdash, the `nsdash` command `make venv` installs: Python without `site`, the same path.

Run for real in a virtual environment made in tmp_path (pyvenv.cfg beside a link to this
interpreter), with a stand-in `nsdash.cli` that reports what the launcher set up.
"""

import os
import subprocess
import sys
from pathlib import Path

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
    (site_packages / "_editable_impl_nsdash.pth").write_text(f"{project}\n")
    # What site would run, and lines naming nothing: none of it reaches the path.
    (site_packages / "distutils-precedence.pth").write_text("import os; os.environ['HOOK_RAN'] = '1'\n")
    (site_packages / "zz.pth").write_text("# a comment\n\nno-such-directory\n")
    launcher = venv / "bin" / "nsdash"
    lines = (REPO / "bin" / "nsdash").read_text().splitlines(keepends=True)
    launcher.write_text(f"#!{python} -S\n" + "".join(lines[1:]))  # as the Makefile writes it
    launcher.chmod(0o755)
    return launcher, site_packages, project


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
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(other)
    out = subprocess.run([str(launcher)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert (out.returncode, out.stdout.strip()) == (0, "checkout"), out.stderr
