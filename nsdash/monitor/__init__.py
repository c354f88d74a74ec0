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

Processes of a cgroup, with command lines and the MACHINE column::

    from nsdash.monitor.procs import processes_with_machines
    processes_with_machines(tree.primary_mount(layout) + path, path)  # [ProcessInfo(pid, cmdline, ...)]

Per-machine network counters (keep one NetSampler; it keeps netns sockets open)::

    from nsdash.monitor.net import NetSampler, leaders_from_cgroups
    from nsdash.monitor.rates import net_rates
    with NetSampler() as ns:
        a = ns.sample({"web": leader_pid}); ...; b = ns.sample({"web": leader_pid})
    net_rates(a, b, seconds)                    # {"web": (rx_bytes_per_s, tx_bytes_per_s)}

systemd-cgtop's rows, order and text (pure): nsdash.monitor.display
(rows_from, order_rows, render, format_bytes, format_timespan).
"""
