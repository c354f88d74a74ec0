"""nsdash.inside: operate inside a running machine through its own systemd and D-Bus.

Headless (no textual).  The dashboard's drill-down uses it like this::

    from nsdash.inside import bus, target, units, procs, unitlog, render, view

    t = target.resolve("web1")                 # Target(name, leader, cgroup); MachineNotFound
    # async, in a worker (every bus call has a deadline: BusTimeout, never a hang):
    async with bus.MachineBus(t, timeout=5) as b:
        sd = units.Systemd(b)
        rows = await sd.list_units()           # [UnitInfo(name, description, load_state,
                                               #   active_state, sub_state, following, job_id, job_type)]
        rows = units.filter_units(rows, types=["service"], states=["failed"], patterns=["ng*"],
                                  all_units=True)   # pure; UnitInfo.failed marks failed ones
        st = await sd.status("nginx")          # UnitStatus: states, main_pid, control_group, result,
                                               #   timestamps (µs), tasks/memory/cpu (None if unknown)
        job = await sd.job("restart", "nginx") # waits; JobOutcome(job_id, unit, kind, result)
                                               # raises JobFailed (message names systemd's result and
                                               #   points to `nsdash journal -M NAME -u UNIT`)
        await sd.job("stop", "nginx", wait=False)   # only queue it
        unit = await sd.find_unit_of_pid(pid)  # PID as the machine sees it (UnitProcess.pid)
        files = await sd.list_unit_files(); await sd.enable(["nginx"]); await sd.disable(["nginx"])

    # sync (CLI, tests): units.run(t, lambda sd: sd.list_units(), timeout=10)

    procs.unit_processes(t, st.control_group)  # [UnitProcess(pid, host_pid, cgroup, cmdline, comm)]
                                               #   from the host's cgroup2 view; None if unavailable
    procs.machine_cgroup_root(t)               # host cgroup path of the machine (its unit cgroups
                                               #   are that + UnitStatus.control_group)
    procs.unit_of_process(t, host_pid)         # a host PID -> its unit from its cgroup, no bus
    unitlog.unit_lines(t, "nginx.service", 10) # [LogLine] of the current boot, .short() is
                                               #   journalctl's line; for a live view use
                                               #   nsdash.journal.open_logs([name],
                                               #   filters=Filters(units=("nginx.service",)))

    # blocking, one call per refresh, for the dashboard's thread workers:
    view.MachineUnits(name).snapshot(with_files=False) / .detail(unit) / .journal(unit) / .act(kind, unit)
    # the screen: nsdash.tui.screens.units.UnitsScreen(name, select=unit)
    render.list_units(rows) / render.status(st, processes=..., log=...)   # systemctl's text

Errors are NsdashError subclasses with a one-line message and hint: bus.BusUnreachable
(no systemd / no dbus in the machine), bus.BusTimeout, bus.MachineGone (powered off
mid-call), units.UnitNotFound, units.JobFailed, bus.BusCallError (any other D-Bus error).
"""
