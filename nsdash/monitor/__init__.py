"""nsdash.monitor: cgroup tree, counters, CPU percent, machines, processes, network.

Pure readers; nothing here changes the host.  The API the dashboard uses:

Layout (cgroup v2, hybrid or v1), detected once::

    from nsdash.system import cgroupfs
    layout = cgroupfs.detect()                  # or detect(Path(fixture_root))

A tree snapshot (immutable CgroupNode: path, children, pids, unreadable, vanished)::

    from nsdash.monitor import tree
    root = tree.walk(tree.primary_mount(layout), "/", depth=None, with_pids=True)
    for node in root.iter(): ...                # parents before children

Counters: keep ONE Sampler alive (it keeps the files open) and call sample()
each refresh; a Sample is frozen (timestamp = time.monotonic(), counters =
{cgroup path: Counters}, unreadable = frozenset of paths)::

    from nsdash.monitor.sampler import Sampler
    sampler = Sampler(layout, start="/", depth=None)   # fields=counters.ALL for extras
    before = sampler.sample(); ...; after = sampler.sample()
    sampler.close()                                    # or use it as a context manager

CPU percent and I/O rates between two samples (pure; None on the first sample)::

    from nsdash.monitor.rates import rates_between, cpu_percent
    rates = rates_between(before, after)        # {path: Rates(cpu_percent, io_read_bps, io_write_bps)}

Machines (cgroup -> name, name -> cgroup, pid -> name)::

    from nsdash.monitor.machines import MachineMap, machine_of_process
    mm = MachineMap(); mm.machine_of("/machine.slice/machine-foo.scope/payload")  # 'foo'

systemd-cgtop's rows, order and text (pure): nsdash.monitor.display
(rows_from, order_rows, render, format_bytes).  Processes of a cgroup:
nsdash.monitor.procs.  Per-machine network counters: nsdash.monitor.net.
"""
