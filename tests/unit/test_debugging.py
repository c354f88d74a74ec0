"""The pure parts of tracing, debugging and profiling machines: option checks, output rewriting, parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsdash.cli import debug as debug_cli
from nsdash.cli import trace as trace_cli
from nsdash.errors import UsageError
from nsdash.inside.debugging import gdb, perf, strace
from nsdash.inside.debugging.pids import pid_at_level
from nsdash.system.cgroupfs import Layout
from nsdash.system.text import escape

# ---------------------------------------------------------------- strace

PROCS = {"clone", "clone3", "fork", "vfork"}


def texts(lines) -> list[str]:
    return [line.text for line in lines]


def test_the_pid_column_becomes_the_machines_and_exits_forget_it():
    calls: list[int] = []
    table = {28802: 1, 2981: 58}

    def lookup(host: int) -> int | None:
        calls.append(host)
        return table.get(host)

    r = strace.Rewriter(lookup)
    assert texts(r.feed("trace", '2981  openat(AT_FDCWD</root>, "/etc/hostname", O_RDONLY) = 3</etc/hostname>', 0)) \
        == ['58    openat(AT_FDCWD</root>, "/etc/hostname", O_RDONLY) = 3</etc/hostname>']
    assert texts(r.feed("trace", "28802 wait4(-1, NULL, 0, NULL) = 2981", 0)) == [
        "1     wait4(-1, NULL, 0, NULL) = 2981"]  # results are the tracee's own numbers: untouched
    assert texts(r.feed("trace", "2981  +++ exited with 0 +++", 0)) == ["58    +++ exited with 0 +++"]
    table[2981] = 77  # the host reused the PID for another process of the machine
    assert texts(r.feed("trace", "2981  --- SIGCHLD ---", 0))[0].startswith("77    ")
    assert calls == [2981, 28802, 2981]


def test_a_child_gone_before_its_lookup_is_named_by_its_parents_clone_result_in_order():
    r = strace.Rewriter({100: 1}.get)  # the child (host 200) has gone: /proc cannot tell
    assert texts(r.feed("trace", "100   vfork( <unfinished ...>", 0.0)) == ["1     vfork( <unfinished ...>"]
    assert r.feed("trace", '200   openat(AT_FDCWD, "/etc/hostname", O_RDONLY) = 3', 0.1) == []
    assert r.feed("message", "strace: Process 200 attached", 0.1) == []  # waits too: the order holds
    assert r.feed("trace", "200   +++ exited with 0 +++", 0.2) == []
    out = texts(r.feed("trace", "100   <... vfork resumed>) = 45 /* 200 in strace's PID NS */", 0.3))
    assert out == ['45    openat(AT_FDCWD, "/etc/hostname", O_RDONLY) = 3', "strace: Process 45 attached",
                   "45    +++ exited with 0 +++", "1     <... vfork resumed>) = 45"]
    assert not r.waiting


def test_a_pid_nobody_names_shows_the_hosts_number_after_the_hold():
    r = strace.Rewriter(lambda host: None)
    assert r.feed("trace", "4242  read(0, ...) = 1", 10.0) == []
    assert r.expire(10.0 + r.HOLD / 2) == []
    assert texts(r.expire(10.0 + r.HOLD)) == ["host:4242 read(0, ...) = 1"]
    r.feed("message", "strace: Process 4242 detached", 20.0)
    assert texts(r.drain()) == ["strace: Process host:4242 detached"]


def test_strace_messages_carry_the_machines_pids():
    r = strace.Rewriter({100: 1, 200: 7}.get)
    assert texts(r.feed("message", "/usr/bin/strace: Process 100 attached", 0)) == [
        "/usr/bin/strace: Process 1 attached"]
    assert texts(r.feed("message", "strace: attach: ptrace(PTRACE_SEIZE, 200): Operation not permitted", 0)) == [
        "strace: attach: ptrace(PTRACE_SEIZE, 7): Operation not permitted"]


def test_process_calls_added_for_the_pids_are_hidden_again():
    r = strace.Rewriter({1: 1}.get, hidden={"clone", "vfork"})
    assert r.feed("trace", "1     clone(child_stack=NULL, flags=SIGCHLD) = 5 /* 9 in strace's PID NS */", 0) == []
    assert r.feed("trace", "1     vfork( <unfinished ...>", 0) == []
    assert r.feed("trace", "1     <... vfork resumed>) = 6 /* 10 in strace's PID NS */", 0) == []
    assert texts(r.feed("trace", '9     openat(AT_FDCWD, "/x", O_RDONLY) = 3', 0)) == [
        '5     openat(AT_FDCWD, "/x", O_RDONLY) = 3']
    kept = strace.Rewriter({1: 1}.get, keep_annotations=True)
    assert texts(kept.feed("trace", "1     clone() = 5 /* 9 in strace's PID NS */", 0)) == [
        "1     clone() = 5 /* 9 in strace's PID NS */"]


def test_fd_paths_lose_the_hosts_path_of_the_machines_root():
    r = strace.Rewriter({1: 1}.get, "/var/lib/machines/web")

    def one(line: str) -> str:
        (out,) = texts(r.feed("trace", line, 0))
        return out

    assert one('1     openat(AT_FDCWD</var/lib/machines/web>, "/etc/x", O_RDONLY) = 3</var/lib/machines/web/etc/x>') \
        == '1     openat(AT_FDCWD</>, "/etc/x", O_RDONLY) = 3</etc/x>'
    # a sibling directory that merely starts the same is left alone, and so is a string
    assert "</var/lib/machines/webby/f>" in one("1     read(3</var/lib/machines/webby/f>, ...) = 0")
    assert one('1     write(1, "<>", 2) = 2') == '1     write(1, "<>", 2) = 2'
    # a machine in a mount namespace of its own: the kernel already prints its paths
    plain = strace.Rewriter({1: 1}.get, "/")
    assert texts(plain.feed("trace", "1     read(3</etc/x>, ...)", 0)) == ["1     read(3</etc/x>, ...)"]


def test_control_characters_from_the_guest_are_escaped():
    r = strace.Rewriter({1: 1}.get)
    assert texts(r.feed("trace", "1     read(3</tmp/\x1b]0;owned\x07>, ...)", 0)) == [
        "1     read(3</tmp/\\x1b]0;owned\\x07>, ...)"]
    assert escape("a\x9bb\tc") == "a\\x9bb\\tc"  # the one sanitiser, nsdash.system.text


@pytest.mark.parametrize("options", [[], ["-e", "trace=openat"], ["-etrace=openat"], ["-tt", "-s", "200"],
                                     ["-fe", "openat"], ["--trace=openat,read", "-y"], ["-s200", "-T"]])
def test_strace_options_that_only_shape_the_trace_pass(options):
    strace.check_options(options)


@pytest.mark.parametrize("options, word", [
    (["ls"], "'ls' is not a strace option"),
    (["-e", "openat", "/bin/sh"], "'/bin/sh' is not a strace option"),
    (["--", "sh"], "'sh' is not a strace option"),
    (["-o", "/tmp/x"], "'-o'"), (["-ofile"], "'-o'"), (["-fo", "x"], "'-o'"), (["--output=/tmp/x"], "'--output'"),
    (["-p", "1"], "'-p'"), (["-D"], "'-D'"), (["-ff"], "'-ff'"),
])
def test_strace_options_that_would_trace_something_else_are_refused(options, word):
    with pytest.raises(UsageError, match=word):
        strace.check_options(options)


def test_strace_argv_follows_forks_writes_to_the_pipe_and_asks_for_host_pids():
    argv, added = strace.build_argv("/usr/bin/strace", [10, 20], ["-tt"], 7)
    assert argv == ["/usr/bin/strace", "-f", "-o", "/dev/fd/7", "-y", "--decode-pids=pidns",
                    "-p", "10", "-p", "20", "-tt"] and added == set()
    argv, _ = strace.build_argv("strace", [1], ["-yy", "--decode-pids=comm"], 3)
    assert "-y" not in argv[:-2] and "--decode-pids=pidns" not in argv


@pytest.mark.parametrize("options, expected, added", [
    (["-e", "trace=openat"], ["-e", "trace=openat,?clone,?clone3,?fork,?vfork"], PROCS),
    (["-eopenat", "-tt"], ["-eopenat,?clone,?clone3,?fork,?vfork", "-tt"], PROCS),
    (["--trace=openat,clone"], ["--trace=openat,clone,?clone3,?fork,?vfork"], PROCS - {"clone"}),
    (["-e", "trace=read", "-e", "t=write"], ["-e", "trace=read", "-e", "t=write,?clone,?clone3,?fork,?vfork"], PROCS),
    (["-e", "trace=%process"], ["-e", "trace=%process"], set()),
    (["-e", "trace=!openat"], ["-e", "trace=!openat"], set()),
    (["-e", "signal=none", "-s", "99"], ["-e", "signal=none", "-s", "99"], set()),
])
def test_a_plain_trace_set_gets_the_process_calls(options, expected, added):
    assert strace.with_process_calls(options) == (expected, added)


def test_trace_cli_splits_its_own_words_from_straces():
    assert trace_cli.split_args(["-M", "web", "42", "-e", "trace=openat"]) == (["-M", "web", "42"],
                                                                             ["-e", "trace=openat"])
    assert trace_cli.split_args(["--all", "-Mweb", "-tt"]) == (["--all", "-Mweb"], ["-tt"])
    assert trace_cli.split_args(["-M", "web", "nginx", "--", "-s", "9"]) == (["-M", "web", "nginx"], ["-s", "9"])
    assert trace_cli.split_args(["--machine=web", "--host-pid", "77"]) == (["--machine=web", "--host-pid", "77"], [])


def test_debug_cli_takes_its_options_wherever_they_stand():
    assert debug_cli.split_args(["-M", "web", "36", "--core", "/tmp/c", "--batch", "-ex", "bt"]) == (
        ["-M", "web", "36", "--core", "/tmp/c"], ["--batch", "-ex", "bt"])
    assert debug_cli.split_args(["36", "-Mweb", "--", "-ex", "1"]) == (["36", "-Mweb"], ["-ex", "1"])


# ---------------------------------------------------------------- pids


def test_the_machines_pid_is_the_one_at_its_namespace_level():
    assert pid_at_level([5374, 36], 1) == 36
    assert pid_at_level([5374, 36, 2], 1) == 36  # a container nested in the machine: still the machine's number
    assert pid_at_level([5374], 1) is None  # not in the machine's PID namespace
    assert pid_at_level(None, 1) is None


# ---------------------------------------------------------------- gdb


def test_gdb_reads_the_machines_files_inside_it_and_runs_no_guest_code_before_it_attaches():
    argv = gdb.build_argv("/usr/bin/gdb", 5374, extra=["--batch", "-ex", "bt"])
    settings = [argv[i + 1] for i, word in enumerate(argv) if word == "-iex"]
    assert "set sysroot target:" in settings  # never /proc/LEADER/root: its absolute symlinks leave the machine
    assert not any("/proc/" in s for s in settings)
    assert "set debug-file-directory /usr/lib/debug" in settings
    assert {"set auto-load off", "set libthread-db-search-path $sdir", "set debuginfod enabled off"} <= set(settings)
    assert argv.index("-p") > max(i for i, word in enumerate(argv) if word == "-iex")
    assert argv[argv.index("-p") + 1] == "5374" and argv[-3:] == ["--batch", "-ex", "bt"]
    core = gdb.build_argv("gdb", 1, core="/tmp/c")
    assert core[-3:] == ["--batch", "-ex", "gcore /tmp/c"]
    with pytest.raises(UsageError):
        gdb.build_argv("gdb", 1, core="a\nshell rm -rf /")


# ---------------------------------------------------------------- perf

SCRIPT = """\
yes  8524/8524\x20\x20
\tffffffff8223b5a6 do_syscall_64 ([kernel.kallsyms])
\tffffffff81000130 entry_SYSCALL_64_after_hwframe ([kernel.kallsyms])
\t           f8350 write (/usr/lib/x86_64-linux-gnu/libc.so.6)

yes  8524/8524\x20\x20
\t            5249 [unknown] (/usr/bin/yes)

kworker/0:1 H  77/78\x20\x20
\t           2ed54 std::vector<int>::push_back(int const&) (/opt/app)

yes  8524/8524\x20\x20
\tffffffff8223b5a6 do_syscall_64 ([kernel.kallsyms])
\tffffffff81000130 entry_SYSCALL_64_after_hwframe ([kernel.kallsyms])
\t           f8350 write (/usr/lib/x86_64-linux-gnu/libc.so.6)
"""


def test_perf_script_parses_into_samples_with_stacks():
    samples = perf.parse_script(SCRIPT)
    assert [s.comm for s in samples] == ["yes", "yes", "kworker/0:1 H", "yes"]
    assert samples[0].host_pid == 8524 and [f.symbol for f in samples[0].frames] == [
        "do_syscall_64", "entry_SYSCALL_64_after_hwframe", "write"]
    assert samples[0].frames[2].dso == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert samples[1].frames[0].name == "yes+0x5249"  # stripped: the file and offset
    assert samples[2].frames[0].symbol == "std::vector<int>::push_back(int const&)"


def test_top_lists_and_folded_stacks():
    profile = perf.Profile("cpu-clock", 1.0, tuple(perf.parse_script(SCRIPT)), {8524: 40})
    functions = profile.top_functions()
    assert functions[0] == perf.Ranked("do_syscall_64", 2, 50.0)
    assert [r.name for r in profile.top_processes()] == ["yes (40)", "kworker/0:1 H"]
    assert profile.folded() == [
        "kworker/0:1 H;std::vector<int>::push_back(int const&) 1",
        "yes;write;entry_SYSCALL_64_after_hwframe;do_syscall_64 2",
        "yes;yes+0x5249 1",
    ]
    text = perf.render_top(profile, 2)
    assert "4 samples of cpu-clock in 1.0 s" in text and "do_syscall_64" in text and "yes (40)" in text


def test_the_flame_graph_is_drawn_by_inferno():
    profile = perf.Profile("cpu-clock", 1.0, tuple(perf.parse_script(SCRIPT)))
    svg = perf.flame_svg(profile, "machine web")
    assert svg.startswith("<?xml") and "<svg" in svg and "do_syscall_64" in svg and "machine web" in svg
    with pytest.raises(perf.PerfFailed, match="no samples"):
        perf.flame_svg(perf.Profile("cpu-clock", 1.0, ()), "empty")


def test_perf_finds_the_machine_in_v1_perf_event_or_else_cgroup2(tmp_path):
    (tmp_path / "unified/machine.slice/m.scope").mkdir(parents=True)
    (tmp_path / "perf_event").mkdir()
    hybrid = Layout("hybrid", tmp_path, tmp_path / "unified", {"cpu": tmp_path / "cpu"})
    assert perf.perf_event_cgroup("/machine.slice/m.scope", hybrid) == "/machine.slice/m.scope"
    with_v1 = Layout("hybrid", tmp_path, tmp_path / "unified", {"perf_event": tmp_path / "perf_event"})
    with pytest.raises(perf.PerfFailed, match="missing in the perf_event hierarchy"):
        perf.perf_event_cgroup("/machine.slice/m.scope", with_v1)
    legacy = Layout("legacy", tmp_path, None, {"cpu": tmp_path / "cpu"})
    with pytest.raises(perf.PerfFailed, match="no perf_event cgroup hierarchy"):
        perf.perf_event_cgroup("/machine.slice/m.scope", legacy)


def test_record_samples_every_cpu_only_in_the_cgroup():
    argv = perf.record_argv("perf", Path("/t/p.data"), "/machine.slice/m.scope", 2.5, "cpu-clock", 99)
    assert argv[argv.index("-e") + 1] == "cpu-clock" and argv.index("-e") < argv.index("-G")
    assert {"-a", "-g"} <= set(argv) and argv[argv.index("-G") + 1] == "/machine.slice/m.scope"
    assert argv[-3:] == ["--", "sleep", "2.5"]
    assert "-B" in argv  # no build IDs: collecting them opens every sampled file by the guest's name
    script = perf.script_argv("perf", Path("/t/w"))
    assert "--symfs=/t/w/symfs" in script and "--kallsyms=/t/w/kallsyms" in script
    assert script[1:3] == ["--buildid-dir", "/t/w/buildid"] and not any("/proc/" in w for w in script)


def test_the_sampled_files_are_named_once_and_only_absolute_clean_paths():
    text = ("sh 4242/4242\n"
            "\t    7f00 __sigsetjmp (/usr/lib/x86_64-linux-gnu/libc.so.6)\n"
            "\t    7f10 [unknown] (/usr/lib/x86_64-linux-gnu/libc.so.6)\n"
            "\tffffffff81000000 _raw_spin_lock ([kernel.kallsyms])\n"
            "\t    7f20 [unknown] ([vdso])\n"
            "\t    7f30 [unknown] (/opt/../root/x)\n"
            "\t    5600 [unknown] (/usr/bin/dash)\n"
            "\n"
            "(/not/a/frame) 1/1\n")
    assert perf.sampled_files(text) == ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/dash"]
