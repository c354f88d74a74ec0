"""nsdash.inside.debugging: strace, gdb and perf from the host on a machine's processes.

Headless (no textual).  The tracers always run on the host, in the host's
namespaces, with the host's binaries: a tracer that entered the machine's PID
or mount namespace would be visible to, and reachable by, whoever is root in
the machine (a host-root process there is an escape hatch), and the guest's
tree may not even hold strace or gdb.  What differs is only how the output is
shown: PIDs as the machine numbers them, paths as the machine sees them.

    pids.py    a machine's processes: its PID <-> host PID, a unit's or the whole
               machine's processes, from the host's cgroup view
    tools.py   the host's strace, gdb and perf, or an error naming the Debian package
    strace.py  the strace command line and the rewriting of its output
    gdb.py     the gdb command line (the machine's root as sysroot, nothing auto-loaded)
    perf.py    perf record limited to the machine's cgroup, the top lists and folded stacks
"""
