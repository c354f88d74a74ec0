# nsdash: the two commands a newcomer needs are `make run` and `make test`.
# Every target does its own set-up, idempotently: apt packages, the virtual
# environment at .venv, the package installed into it, and the OS trees
# (`make trees`: the demo trees and the guest matrix the tests boot, built once
# per machine into NSDASH_TREE_CACHE, default /var/cache/nsdash/trees).

# Debian's /usr/bin/python3.11 (built with PGO and LTO, libpython linked in) runs
# about a fifth fewer instructions per start than a shared, unoptimised build such as
# pyenv's; every `nsdash` verb is a fresh interpreter.  Any other python3 otherwise.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) python3)
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := systemd-container debootstrap busybox-static tmux libsystemd-dev pkg-config nftables \
	dbus iproute2 libseccomp2 gcc python3-venv python3-dev util-linux systemd-journal-remote \
	strace gdb linux-perf fdisk btrfs-progs xfsprogs

.PHONY: run test setup apt venv trees demo-trees bytecode lint typecheck screenshots bench clean

run: apt venv demo-trees bytecode
	$(VENV)/bin/nsdash --demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

setup: apt venv trees bytecode

# Every `nsdash` run is a fresh interpreter: without .pyc files (an editable
# install compiles nothing, and PYTHONDONTWRITEBYTECODE may forbid writing them)
# each run recompiles the package, about 100 ms.  Only stale files recompile.  Then the
# bundle of all of it that `nsdash` reads instead of a .pyc per module (nsdash/codebundle.py, written by nsdash/bundlewrite.py):
# about 230 system calls fewer per verb; a module whose source changed since is found as before.
bytecode: venv
	$(PY) -m compileall -q nsdash
	$(PY) -m nsdash.bundlewrite >/dev/null

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e '.[test]'
	touch $@

# The `nsdash` command pip makes runs `site` first (about 3 ms of every start); bin/nsdash
# starts Python with -S and adds the same directories itself.  Written over pip's launcher
# after each install, with this environment's interpreter on its first line and its
# directories written in, found once here (nsdash/launchscript.py), not on every run.
$(VENV)/.launcher: bin/nsdash nsdash/launchscript.py $(VENV)/.installed
	$(PY) -m nsdash.launchscript $(abspath $(VENV)) < bin/nsdash > $(VENV)/bin/nsdash.new \
		|| { rm -f $(VENV)/bin/nsdash.new; exit 1; }
	chmod 755 $(VENV)/bin/nsdash.new
	mv $(VENV)/bin/nsdash.new $(VENV)/bin/nsdash
	touch $@

venv: $(VENV)/.installed $(VENV)/.launcher

trees: venv
	$(PY) -m nsdash.demo.trees

demo-trees: venv
	$(PY) -m nsdash.demo.trees busybox debian

lint: venv
	$(VENV)/bin/ruff check nsdash tests bench
	$(VENV)/bin/mypy nsdash

screenshots: setup
	$(PY) -m nsdash.tui.screenshots screenshots

# One table of every ratio (each bench run with --json; see bench/summary.py).
# BENCH_ARGS=--quick for smaller sizes; BENCH_ARGS=--readme README.md rewrites the README's table.
bench: setup
	$(PY) bench/summary.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
