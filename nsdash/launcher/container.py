"""Container: one run of a ContainerSpec, from fork to teardown.

    with Container(spec, console=True) as c:
        leader = c.start()      # c.console_master: the console PTY's master, until close()
        outcome = c.wait()

The caller (the foreground run loop, or the detached supervisor) is made a
child subreaper: a middle child joins the machine's cgroup, unshares the
namespaces, forks the container's PID 1 and exits, so PID 1 is reparented to
the caller, which waits for it.  A sync pipe holds PID 1 until the host-side
set-up (veth) is done; a close-on-exec error pipe tells the caller whether
PID 1 reached exec or why it did not.  close() always tears everything down.
"""

from __future__ import annotations

import _socket  # the C module: socket.py would pull in selectors and enum for one datagram socket
import _thread  # threading.Lock is _thread's lock; threading itself is not needed for one lock
import contextlib
import errno
import gc
import os
import signal
import struct
from pathlib import Path

from nsdash.errors import NsdashError
from nsdash.launcher import child, inuse, userns
from nsdash.launcher.cgroup import MachineCgroup, scope_path
from nsdash.launcher.plan import (
    BIND_TEMP_DIR,
    BOOT_ID_FILE,
    CAPABILITIES,
    EPHEMERAL_DIR,
    NOTIFY_FILE,
    OVERLAY_TEMP_DIR,
    LaunchPlan,
    build_plan,
)
from nsdash.launcher.spec import ContainerSpec
from nsdash.system import cgroupfs, paths
from nsdash.system import syscalls as sc
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # mypy reads this as True; typing stays off the spawn path
if TYPE_CHECKING:
    import ipaddress

    from nsdash.launcher.dhcp_server import DhcpServer
    from nsdash.launcher.image import AttachedImage
    from nsdash.launcher.modes import OutcomeKind, Ownership

NOTIFY_DATAGRAM = 4096  # bytes read of one sd_notify datagram; a longer one is dropped whole (as nspawn)
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid (SCM_CREDENTIALS)
# Room for the sender's credentials alone: descriptors passed with a message (FDSTORE=1)
# find no room, and the kernel drops them rather than install them here.
_NOTIFY_ANCILLARY = _socket.CMSG_SPACE(_UCRED.size)
NOTIFY_BATCH = 256  # datagrams drained per read_notify() call, so a flood cannot starve the caller's loop
STATUS_MAX = 256  # characters kept of STATUS= (guest text, shown escaped by whoever displays it)
SECCOMP_FILE = "seccomp"  # in the run's state directory: the machine's filters (sandbox.pack_filters)
RUN_FILES = (NOTIFY_FILE, BOOT_ID_FILE, SECCOMP_FILE)  # what a run directory holds ...
RUN_DIRS = (EPHEMERAL_DIR, BIND_TEMP_DIR, OVERLAY_TEMP_DIR)  # ... and its temporary layers, if asked for

# reboot(2) inside a PID namespace kills its init with these (pid_namespaces(7)).
REBOOT_SIGNAL = signal.SIGHUP
POWEROFF_SIGNAL = signal.SIGINT


# Held from creating the handshake pipes until the parent has closed the children's ends:
# a start on another thread forking inside that window would hand its middle child and
# PID 1 our write ends, and neither side would then see the EOF it waits for.
_FORK_WINDOW = _thread.allocate_lock()

_OS_HINTS = {
    errno.ENOSPC: "free some space where nsdash keeps its state (NSDASH_STATE_DIR, default /run/nsdash)",
    errno.EDQUOT: "free some space where nsdash keeps its state (NSDASH_STATE_DIR, default /run/nsdash)",
    errno.EROFS: "that file system is read-only: run the tree with -x/--ephemeral, or remount it read-write",
    errno.EACCES: "run nsdash as root",
    errno.EPERM: "run nsdash as root",
}


class Outcome(Frozen):
    """How one run of the container ended."""

    kind: OutcomeKind
    status: int  # exit code, or signal number for "killed"

    @classmethod
    def from_wait_status(cls, status: int) -> Outcome:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == REBOOT_SIGNAL:
                return cls("reboot", 0)
            if sig == POWEROFF_SIGNAL:
                return cls("poweroff", 0)
            return cls("killed", sig)
        return cls("exited", os.waitstatus_to_exitcode(status))

    def exit_code(self) -> int:
        """What `nsdash spawn` exits with for this outcome."""
        if self.kind == "exited":
            return self.status
        if self.kind == "killed":
            return 128 + self.status
        return 0


def veth_name(machine: str, prefix: str = "ve-") -> str:
    """The host side of --network-veth: ve-NAME (vb-NAME with a bridge or zone), shortened as
    systemd-nspawn does."""
    from nsdash.system.netlink import veth_host_name

    return veth_host_name(machine, prefix)


def _available_capabilities() -> frozenset[str]:
    _, permitted, _ = sc.capget()
    return frozenset(name for name, bit in CAPABILITIES.items() if permitted & (1 << bit))



def _warn_no_device_filter() -> None:
    """Like nspawn, start without a device filter where none can exist, but say so: device
    nodes already in the tree stay usable (CAP_MKNOD is dropped, so no new ones)."""
    from nsdash.launcher import cgroup as cgroup_module

    why = cgroup_module.device_filter_error
    os.write(2, (f"nsdash: warning: no device filter on this host (the kernel refused the cgroup2 "
                 f"device program: {why.strerror if why else 'no cgroup2'}); CAP_MKNOD is dropped, but "
                 f"device nodes in the tree stay usable: use -U for trees you do not trust\n").encode())

class Container:
    """One run of a container; a context manager whose close() tears everything down."""

    def __init__(self, spec: ContainerSpec, *, console: bool = False,
                 uuid: str | None = None, cgroup_layout: cgroupfs.Layout | None = None,
                 cgroup: MachineCgroup | None = None, run_dir: str | None = None) -> None:
        """console: PID 1 gets a console PTY made in the container's own devpts (as
        systemd-nspawn's); its master is console_master once started, closed by close().
        uuid: $container_uuid when neither the tree nor --uuid gives one (pass the same
        one to each run of a machine that reboots).  cgroup_layout: the hierarchies to use
        instead of the host's (tests run a pure-cgroup2 layout on a hybrid host).  cgroup:
        the cgroup backend for this run (a systemd scope on hosts booted with systemd,
        machines/units.py); by default nsdash makes the cgroups itself.  run_dir: where this
        run's files go (RUN_FILES, RUN_DIRS): a directory of the caller's, which it removes itself
        (the supervisor's entry for the machine: one directory per machine, not two, each an
        inode made and freed per boot on a /run that may be on disk); by default run/NAME under
        the state directory, made and removed here."""
        self.spec = spec
        self._given_run_dir = run_dir
        self._run_files: list[str] = []  # the RUN_FILES in it now
        self._run_subdirs: list[str] = []  # the RUN_DIRS made in it (with -U the child makes some)
        self.cgroup_layout = cgroup_layout
        self._backend = cgroup
        self.uuid = uuid
        self.console = console
        self.console_master: int | None = None
        self.leader: int | None = None
        self.cgroup: str = scope_path(spec.machine)
        self.plan: LaunchPlan | None = None
        self.ready = False  # true once the payload has sent READY=1
        self.status_text: str | None = None  # the payload's last STATUS=
        self.notify_taken = 0  # datagrams the last read_notify() read
        self.outcome: Outcome | None = None
        self._cg: MachineCgroup | None = None
        self._run_dir: Path | None = None
        self._notify: _socket.socket | None = None
        self._pidfd: int | None = None
        self._veth: str | None = None
        self._lease: object | None = None  # network.Lease (or True while taking one): what close() gives back
        self.network_mode: str | None = None  # which path -n took (shown by status)
        self.dhcp: DhcpServer | None = None  # answers a networkd guest on ve- (the supervisor polls it)
        self._moved: list[str] = []  # --network-interface links to give back
        self._extra_veths: list[str] = []  # --network-veth-extra host sides
        self._netns_fd: int | None = None  # holds the machine's network namespace for the give-back
        self._id_claim: inuse.IdClaim | None = None  # the machine ID, held while it runs
        self._journal_link: tuple[str, str] | None = None  # --link-journal=guest: the host symlink we made
        self._image: AttachedImage | None = None  # --image: its loop device and the host's view of its mounts
        self._closed = False

    # ---- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> int:
        """Launch the container; return the host PID of its PID 1.  On failure nothing remains."""
        if self.leader is not None:
            raise RuntimeError("a Container runs once; make a new one to run again")
        try:
            # The host's cgroup hierarchies, looked at once for both users at the start (detect() is
            # some fifteen system calls on a hybrid host): inuse's scan of machine.slice and the
            # machine's own cgroup, unless a test gave the latter a layout of its own.
            host = cgroupfs.detect()
            # One start at a time per name and per tree, until PID 1 runs in the tree (inuse.py).
            with inuse.start_guard(self.spec.machine, os.path.abspath(self.spec.directory),
                                   self.spec.ephemeral, layout=host):
                return self._start(host)
        except OSError as e:
            # A full disk, a read-only file system, ...: one line naming the cause, nothing left.
            self.close()
            where = f" ({e.filename})" if e.filename else ""
            raise NsdashError(f"cannot start machine '{self.spec.machine}': {e.strerror or e}{where}",
                              _OS_HINTS.get(e.errno or 0, "run with NSDASH_DEBUG=1 for details")) from None
        except BaseException:
            self.close()
            raise

    def _start(self, host: cgroupfs.Layout) -> int:
        spec = self.spec
        run_dir = Path(self._given_run_dir or paths.state_root() / "run" / spec.machine)
        cg = self._backend or MachineCgroup(spec.machine, self.cgroup_layout or host, slice_name=spec.slice,
                                            properties=spec.properties)
        self.cgroup = cg.path
        if spec.image is not None:  # mounted at spec.directory, where the plan reads the tree
            from nsdash.launcher.image import AttachedImage

            self._image = AttachedImage(spec.image, spec.machine, read_only=spec.read_only,
                                        ephemeral=spec.ephemeral)
            self._image.attach()
        available = _available_capabilities()
        if not cg.filters_devices and "CAP_MKNOD" not in spec.capabilities:
            # Neither the cgroup2 BPF device program (the kernel refused to load it) nor a v1
            # devices whitelist: as systemd-nspawn keeps CAP_MKNOD only on the strength of its
            # filter, without one a container must not make nodes nothing would stop it using.
            available -= {"CAP_MKNOD"}
        plan = build_plan(spec, console=self.console, state_dir=str(run_dir),
                          host_term=os.environ.get("TERM"), available_caps=available,
                          session_uuid=self.uuid)
        self.plan = plan
        # Its machine ID is its alone while it runs: the host's journal directory of that ID
        # is this machine's (journal/locate.py), and a copied /etc/machine-id is refused here.
        # Only a machine that links its journal to the host claims its ID: copies of one tree
        # that link nothing share it, as nspawn lets them (cp -a of a tree, -x).
        if spec.link_journal != "no":
            self._id_claim = inuse.IdClaim(plan.uuid, spec.machine)
        cg.create()  # refuses a running machine of that name before anything else is touched
        self._cg = cg
        if not cg.filters_devices:
            _warn_no_device_filter()
        self._prepare_run_dir(run_dir, plan)
        self._prepare_journal(plan)
        user_range = plan.userns.range if plan.userns else None
        ownership = plan.userns.ownership if plan.userns else "off"
        # map/auto: the idmapped tree travels to PID 1 with the go byte (SCM_RIGHTS), once
        # its user namespace exists to serve as the mapping.
        send_tree = bool(user_range) and ownership in ("map", "auto")
        if user_range:  # -U: the tree's owners and the cgroup move into the container's range
            userns.prepare_tree(plan.tree, *user_range, ownership)
            if cg.layout.unified is not None and cg.child_joins:
                userns.delegate_cgroup(cg.main_dir, user_range[0])
            userns.hand_over(run_dir, user_range[0], plan.ephemeral_dir)

        # The middle child is forked into cgroup2 (clone3) and joins the v1 hierarchies of a
        # hybrid host itself before it makes PID 1 and the cgroup namespace (child.middle).
        early = [str(d) for d in cg.dirs] if cg.child_joins else []
        # Without a user namespace, a namespace to join or a scope to be placed in, PID 1 is
        # cloned straight into its cgroup and namespaces (_clone_pid1): no middle child.
        direct = not user_range and plan.netns_path is None and cg.child_joins
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        _FORK_WINDOW.acquire()
        holding = True
        info_r = info_w = go_r = go_w = err_r = err_w = place_r = place_w = con_r = con_w = -1
        middle = -1
        try:
            if not cg.child_joins:  # the middle child waits until place() has had it moved
                place_r, place_w = os.pipe2(os.O_CLOEXEC)
            go_r, go_w = _socketpair() if send_tree else os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            if self.console:
                con_r, con_w = _socketpair()
            # The children only run a little Python before exec; keep the collector from walking
            # (and so copying, page by page) every object of ours in them.
            gc.freeze()
            born = _clone_pid1(cg, plan, early) if direct else None
            if born is not None and born[0] == 0:
                gc.disable()
                try:
                    os.close(go_w)
                    os.close(err_r)
                    if con_r >= 0:
                        os.close(con_r)
                    child.born_pid1(plan, born[1], go_r, err_w, con_w)
                finally:
                    os._exit(1)
            if born is not None:
                self.leader = born[0]
            else:  # the middle child makes the namespaces and forks PID 1
                info_r, info_w = os.pipe2(os.O_CLOEXEC)
                middle, early = _fork_middle(cg, early)
            if middle == 0:
                gc.disable()
                try:
                    os.close(info_r)
                    os.close(go_w)
                    os.close(err_r)
                    if place_w >= 0:
                        os.close(place_w)
                    if con_r >= 0:
                        os.close(con_r)
                    child.middle(plan, early, info_w, go_r, err_w, con_w, place_r)
                finally:
                    os._exit(1)
            gc.unfreeze()
            if info_w >= 0:
                os.close(info_w)
            os.close(go_r)
            os.close(err_w)
            info_w = go_r = err_w = -1
            if con_w >= 0:
                os.close(con_w)
                con_w = -1
            _FORK_WINDOW.release()
            holding = False
            if place_w >= 0:
                os.close(place_r)
                place_r = -1
                handed, place_w = place_w, -1
                self._place(cg, middle, handed, user_range)
            if born is not None:
                leader = born[0]
            else:
                data = _read_all(info_r)
                os.waitpid(middle, 0)
                if len(data) != 4:
                    self._raise_child_error(err_r, "the container's namespaces could not be created")
                leader = self.leader = struct.unpack("i", data)[0]
            self._pidfd = _pidfd_open(leader)
            self._setup_network(plan)
            tree_fd = -1
            if user_range:
                userns.write_id_maps(leader, *user_range)
                if send_tree:
                    tree_fd = self._idmapped_tree(plan, user_range, ownership)
            with contextlib.suppress(BrokenPipeError):
                if tree_fd >= 0:
                    try:
                        _send_fd(go_w, b"1", tree_fd)
                    finally:
                        os.close(tree_fd)
                else:
                    os.write(go_w, b"1")  # EPIPE: PID 1 already failed; its report is on err_r
            os.close(go_w)
            go_w = -1
            report = _read_all(err_r)
            if report:
                self._reap_leader()
                msg, _, hint = report.decode(errors="replace").partition("\0")
                raise NsdashError(msg, hint or None)
            if BOOT_ID_FILE in self._run_files:
                # As systemd-nspawn: PID 1 has it bound over /proc/sys/kernel/random/boot_id, which
                # keeps it; the run directory (the supervisor's entry) keeps root's files only.
                self._run_files.remove(BOOT_ID_FILE)
                with contextlib.suppress(OSError):
                    os.unlink(run_dir / BOOT_ID_FILE)
            if self._image is not None:
                # PID 1 runs in its own copy of the image's mounts: the host's goes, so the loop
                # device lives exactly as long as the machine's mount namespace
                self._image.release_host_view()
            if con_r >= 0:
                self.console_master = _receive_console(con_r)
        finally:
            if holding:
                _FORK_WINDOW.release()
            gc.unfreeze()  # (already, unless fork failed)
            for fd in (info_r, info_w, go_r, go_w, err_r, err_w, place_r, place_w, con_r, con_w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        return leader

    def _place(self, cg: MachineCgroup, middle: int, place_w: int,
               user_range: tuple[int, int] | None) -> None:
        """Have the waiting middle child moved into the machine's cgroup (a scope systemd
        makes around it), then let it go on to make the namespaces and PID 1."""
        try:
            cg.place(middle)
            self.cgroup = cg.path
            if user_range and cg.layout.unified is not None:
                userns.delegate_cgroup(cg.main_dir, user_range[0])
        except BaseException:
            os.close(place_w)  # EOF: the middle child gives up
            with contextlib.suppress(ChildProcessError):
                os.waitpid(middle, 0)
            raise
        try:
            os.write(place_w, b"1")
        finally:
            os.close(place_w)

    def _idmapped_tree(self, plan: LaunchPlan, user_range: tuple[int, int], ownership: Ownership) -> int:
        """-U map/auto: the tree idmapped through PID 1's user namespace, or -1 when auto
        falls back to chown (the kernel or file system refused: that is the probe)."""
        try:
            return userns.idmapped_tree(plan.tree, f"/proc/{self.leader}/ns/user")
        except OSError as e:
            if ownership == "map" or plan.ephemeral_dir:
                raise userns.idmap_refusal(plan.tree, e, bool(plan.ephemeral_dir)) from None
        userns.shift_tree(plan.tree, *user_range)
        return -1

    def _raise_child_error(self, err_r: int, fallback: str) -> None:
        report = _read_all(err_r)
        msg, _, hint = report.decode(errors="replace").partition("\0")
        raise NsdashError(msg or fallback, hint or None)

    def _prepare_run_dir(self, run_dir: Path, plan: LaunchPlan) -> None:
        if self._given_run_dir is None:
            _rmtree(run_dir)  # a stale one: its machine is not running
            run_dir.mkdir(parents=True, mode=0o700)
        self._run_dir = run_dir
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC | _socket.SOCK_NONBLOCK)
        self._notify = sock
        # Each datagram then carries its sender's PID (the kernel's, in our PID namespace):
        # read_notify() takes only PID 1's, as systemd-nspawn does.
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_PASSCRED, 1)
        old = os.umask(0o177)  # 0600 whatever the caller's umask: the directory may be searchable
        try:
            sock.bind(str(run_dir / NOTIFY_FILE))
        finally:
            os.umask(old)
        self._run_files.append(NOTIFY_FILE)
        # Host users must not reach what the guest writes into a temporary layer (the
        # directory may be searchable).
        spec = self.spec
        for name, used in ((BIND_TEMP_DIR, any(b.source is None for b in spec.binds)),
                           (OVERLAY_TEMP_DIR, any(o.temporary for o in spec.overlays))):
            if used:
                os.makedirs(run_dir / name, mode=0o700, exist_ok=True)
                self._run_subdirs.append(name)
        if plan.userns:
            # -U: each --bind=:PATH directory is the container root's, as nspawn makes it (host
            # root's, the guest could not write to it); the child opens it as host root, the owner
            # of the 0700 directory above.
            for i, bind in enumerate(spec.binds):
                if bind.source is None:
                    source = run_dir / BIND_TEMP_DIR / str(i)
                    os.makedirs(source, mode=0o755, exist_ok=True)
                    os.chown(source, plan.userns.range[0], plan.userns.range[0])
        if plan.boot_id is not None:
            fd = os.open(run_dir / BOOT_ID_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
            self._run_files.append(BOOT_ID_FILE)
            try:
                os.write(fd, f"{plan.boot_id}\n".encode())
            finally:
                os.close(fd)
        program = plan.hardening.seccomp
        if program:
            # nsdash shell loads the same filter into what it runs in the machine.
            fd = os.open(run_dir / SECCOMP_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
            self._run_files.append(SECCOMP_FILE)
            try:
                os.write(fd, program)
            finally:
                os.close(fd)
        if plan.ephemeral_dir:
            os.makedirs(plan.ephemeral_dir, mode=0o700, exist_ok=True)  # (userns.hand_over opens it to -U's root)
            self._run_subdirs.append(EPHEMERAL_DIR)
            for sub in ("upper", "work", "root"):
                os.makedirs(os.path.join(plan.ephemeral_dir, sub), mode=0o755, exist_ok=True)

    def _prepare_journal(self, plan: LaunchPlan) -> None:
        if plan.host_journal_dir:
            os.makedirs(plan.host_journal_dir, mode=0o2755, exist_ok=True)
        if plan.host_journal_link:
            link, target = plan.host_journal_link
            if not os.path.islink(link):
                os.symlink(target, link)
                self._journal_link = (link, target)

    def _setup_network(self, plan: LaunchPlan) -> None:
        if self.leader is None or plan.network not in ("veth", "private"):
            return
        if (self.spec.network_interface or self.spec.network_macvlan or self.spec.network_ipvlan
                or self.spec.network_veth_extra):
            self._extra_links()
        if plan.network != "veth":
            return
        from nsdash.system import netlink  # pyroute2 only when a veth was asked for: it is slow to import

        bridge = self.spec.network_bridge
        if self.spec.port:
            from nsdash.launcher import network

            problem = network.nft_problem()
            if problem:  # before any link is made
                raise NsdashError(f"--port needs nftables for its forwarding rules, and {problem}",
                                  "apt-get install nftables, or drop --port (-n works without it, "
                                  "with no masquerade)")
        if bridge and not netlink.is_bridge(bridge):
            raise NsdashError(f"--network-bridge={bridge}: there is no bridge named {bridge} on the host",
                              f"create it (ip link add {bridge} type bridge) or name another")
        if bridge and self.spec.port:
            raise NsdashError("--port cannot be combined with --network-bridge: the bridge's network, not "
                              "nsdash, addresses the machine", "use -n or --network-zone with --port")
        joined = bridge or self.spec.network_zone
        name = veth_name(plan.machine, "vb-" if joined else "ve-")
        try:
            netlink.create_veth(name, peer_pid=self.leader,
                                altname=netlink.veth_altname(plan.machine, "vb-" if joined else "ve-"))
        except Exception as e:  # pyroute2's NetlinkError and friends
            raise NsdashError(f"cannot create the veth pair {name}/host0: {e}",
                              "is another machine using that name? pick another with -M") from None
        self._veth = name
        if bridge:
            netlink.set_master(name, bridge)
            netlink.set_link_up(name)
            self.network_mode = f"bridge {bridge}: host0 is left to the bridge's network (DHCP inside)"
            return
        self._configure_link(plan, name)

    def _extra_links(self) -> None:
        """--network-interface (moved in, given back by close()), --network-macvlan and
        --network-ipvlan (mv-IF/iv-IF made in the machine's namespace), as nspawn does."""
        from nsdash.system import netlink

        assert self.leader is not None
        for option, names in (("--network-interface", self.spec.network_interface),
                              ("--network-macvlan", self.spec.network_macvlan),
                              ("--network-ipvlan", self.spec.network_ipvlan)):
            for name in names:
                if not netlink.link_exists(name):
                    raise NsdashError(f"{option}={name}: there is no network interface {name} on the host",
                                      "name one that `ip link` lists")
        if self.spec.network_interface:
            self._netns_fd = os.open(f"/proc/{self.leader}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        for name in self.spec.network_interface:
            try:
                netlink.move_link(name, self.leader)
            except Exception as e:  # pyroute2's NetlinkError (its code an errno) and friends
                code = getattr(e, "code", None)
                raise NsdashError(f"--network-interface={name}: cannot move it into the machine: "
                                  f"{os.strerror(code) if isinstance(code, int) and code > 0 else e}",
                                  "name a link that may change namespace ('ip -d link show' marks "
                                  "the ones that may not, as lo, netns-local)") from None
            self._moved.append(name)
        for kind, prefix, names in (("macvlan", "mv-", self.spec.network_macvlan),
                                    ("ipvlan", "iv-", self.spec.network_ipvlan)):
            for name in names:
                try:
                    netlink.create_vlan_link(kind, name, netlink.shorten_ifname(prefix + name), self.leader)
                except Exception as e:  # pyroute2's NetlinkError, e.g. a kernel without the link type
                    raise NsdashError(f"--network-{kind}={name}: cannot create the {kind} link: {e}",
                                      f"does this kernel have {kind} (modprobe {kind})?") from None

        for pair in self.spec.network_veth_extra:
            host, _, inside = pair.partition(":")
            try:
                netlink.create_veth(host, inside, peer_pid=self.leader)
            except Exception as e:  # pyroute2's NetlinkError, e.g. the name is taken
                raise NsdashError(f"--network-veth-extra={pair}: cannot create the veth pair: {e}",
                                  "pick a host name no link has") from None
            self._extra_veths.append(host)
            netlink.set_link_up(host)

    def _give_back(self) -> None:
        """Move --network-interface links back to the host (their namespace is held by an fd)."""
        if self._netns_fd is None:
            return
        from nsdash.system import netlink  # pyroute2: only when there is something to give back

        for name in self._moved:
            with contextlib.suppress(Exception):  # gone meanwhile: nothing to give back
                netlink.give_back(name, self._netns_fd)
        self._moved = []
        os.close(self._netns_fd)
        self._netns_fd = None

    def _configure_link(self, plan: LaunchPlan, name: str) -> None:
        """Address both ends (or join a zone), route host0 via the host and masquerade
        (launcher/network.py), before the payload starts; left to systemd-networkd where
        it runs on the host."""
        import ipaddress

        from nsdash.launcher import network
        from nsdash.system import netlink

        ports = [network.parse_port(p) for p in self.spec.port]
        zone = self.spec.network_zone
        if network.networkd_active():
            # As nspawn: the link stays as made (down, no address) and networkd takes it whole
            # (80-container-ve.network brings it up, addresses it from its pool, serves DHCP).
            if ports:
                raise NsdashError("--port: systemd-networkd runs on this host, and nsdash forwards ports only "
                                  "on links it configures itself", "forward the port with networkd's settings")
            self.network_mode = "systemd-networkd (the host's networkd configures the link and host0)"
            if zone:  # the bridge is made here and networkd configures it; it goes with its last machine
                with network.locked():
                    self._lease = True  # close() asks network.forget(), which removes an empty bridge
                    try:
                        network.join_networkd_zone(zone, name)
                    except Exception as e:  # pyroute2's NetlinkError and friends
                        raise NsdashError(f"cannot join {name} to zone {zone}: {e}") from None
                self.network_mode = (f"systemd-networkd (zone {zone}: bridge {network.ZONE_PREFIX}{zone}, "
                                     "configured with host0 by the host's networkd)")
            return
        netlink.set_link_up(name)
        # A booted guest that enables networkd asks for host0's address by DHCP (and would drop
        # one set from outside): leave host0 to it and answer on the ve- link, as the host's
        # networkd does for nspawn.  Zones keep the static set-up (one server per bridge is not
        # built), and so does a payload that is not the tree's init.  IPv6: a ULA /64 that
        # goes with the lease (launcher/network.py), set as IPv4 is.
        dhcp = bool(plan.boot and not zone and network.guest_networkd(str(self.spec.directory)))
        v6 = not dhcp and network.ipv6_available()  # a DHCP guest: IPv4 only (no router advertisements)
        with network.locked():
            network.check_ports(plan.machine, ports)
            self._lease = True  # from here on close() asks network.forget() (a zone made for us goes too)
            try:
                if zone:
                    block = network.join_zone(zone)
                    self._lease = lease = network.zone_member(plan.machine, block)
                    netlink.set_master(name, network.ZONE_PREFIX + zone)
                    guest = f"{lease.block.network_address}/{block.block.prefixlen}"
                    gateway, gateway6, guest6 = block.host, block.host6, network.member6(block, lease)
                else:
                    self._lease = lease = network.allocate(plan.machine)
                    netlink.add_address(name, str(lease.host))
                    guest, gateway, gateway6, guest6 = str(lease.guest), lease.host, lease.host6, lease.guest6
                    if v6:
                        netlink.add_address(name, str(gateway6))
                if dhcp:
                    self._serve_dhcp(name, gateway, ipaddress.IPv4Interface(guest))
                else:
                    if not zone:  # a DHCP client in the guest (ifupdown, udhcpc) gets the same address
                        with contextlib.suppress(NsdashError):  # port 67 held on every link: static only
                            self._serve_dhcp(name, gateway, ipaddress.IPv4Interface(guest))
                    netlink.add_address(netlink.CONTAINER_IFNAME, guest, self.leader)
                    netlink.set_link_up(netlink.CONTAINER_IFNAME, self.leader)
                    netlink.add_default_route(str(gateway.ip), self.leader)
                if v6:
                    netlink.add_address(netlink.CONTAINER_IFNAME, str(guest6), self.leader)
                    netlink.add_default_route(str(gateway6.ip), self.leader)
                masquerade = network.nft_available()  # without it: addresses, no way out (said below)
                if masquerade:
                    network.enable_forwarding()
                    if v6:
                        network.enable_forwarding6()
                    # A zone's masquerade is its bridge's (join_zone); a machine adds its ports.
                    network.add_rules(plan.machine, None if zone else (lease.block, name), ports,
                                      ipaddress.IPv4Interface(guest).ip,
                                      (lease.prefix6, name) if v6 and not zone else None,
                                      guest6.ip if v6 else None)
            except NsdashError:
                raise
            except Exception as e:  # pyroute2's NetlinkError and friends
                raise NsdashError(f"cannot configure the link {name}/host0: {e}") from None
        if not masquerade:
            os.write(2, (f"nsdash: warning: machine '{plan.machine}' reaches the host only, with no "
                         f"masquerade to the outside: {network.nft_problem()}; apt-get install "
                         f"nftables\n").encode())
        host_side = f"{gateway} and {gateway6}" if v6 else f"{gateway}"
        where = f"zone {zone} (bridge {network.ZONE_PREFIX}{zone}, {host_side})" if zone else f"{host_side} on {name}"
        inside = f"{guest} and {guest6}" if v6 else guest
        host0 = (f"{guest} offered to the guest's networkd by DHCP" if dhcp
                 else f"{inside} on host0" + (" (also answered by DHCP)" if self.dhcp else ""))
        self.network_mode = (f"nsdash: {where}, {host0}, "
                             + ("masquerade" if masquerade else "no masquerade (no nftables)")
                             + "".join(f", port {p}" for p in ports))

    def _serve_dhcp(self, link: str, server: ipaddress.IPv4Interface, guest: ipaddress.IPv4Interface) -> None:
        """Answer the guest's DHCP on LINK (the supervisor's loop drives dhcp_server)."""
        from nsdash.launcher import dhcp
        from nsdash.launcher.dhcp_server import DhcpServer

        self.dhcp = DhcpServer(link, dhcp.Offer(server=server.ip, address=guest, dns=dhcp.host_resolvers()))

    # ---- running --------------------------------------------------------------

    @property
    def managed_cgroup(self) -> bool:
        """Whether someone else (systemd) made the machine's cgroup around it."""
        return self._backend is not None and not self._backend.child_joins

    @property
    def netif(self) -> list[str]:
        """Host-side network interfaces made for this run (the veth's ve-NAME, the extra veths)."""
        return ([self._veth] if self._veth else []) + self._extra_veths

    @property
    def pidfd(self) -> int | None:
        """A pidfd of PID 1, readable once it has exited (for select loops)."""
        return self._pidfd

    @property
    def notify_fd(self) -> int | None:
        """The notify socket; call read_notify() when it is readable."""
        return self._notify.fileno() if self._notify else None

    def read_notify(self, limit: int = NOTIFY_BATCH) -> bool:
        """Drain sd_notify datagrams from the payload; True if READY=1 or STATUS= changed.

        Only the container's PID 1 is heard, as systemd-nspawn hears only its inner child:
        a datagram is taken when the kernel's credentials (SO_PASSCRED) name the leader.
        Any other process that reaches the socket (the guest's root owns it under -U; a
        guest root daemon, say) cannot mark the machine ready or set its status; a process
        may claim another PID only with CAP_SYS_ADMIN over the guest's PID namespace, which
        can do more than that anyway.  Bounded so a flood costs nothing: at most NOTIFY_BATCH
        datagrams per call (the caller's loop calls again while the socket stays readable),
        one longer than NOTIFY_DATAGRAM dropped whole, and only READY=1 and the last STATUS=
        (cut at STATUS_MAX) kept; every other key (newer systemds send more) and garbage is
        dropped.  Passed file descriptors (FDSTORE=1) find no room and are dropped by the kernel.
        At most LIMIT datagrams this call; notify_taken says how many were read (heard or
        not: each cost a system call), so the caller can keep its own budget.
        """
        self.notify_taken = 0
        if self._notify is None:
            return False
        ready, status = False, None
        for _ in range(min(limit, NOTIFY_BATCH)):
            try:
                data, ancillary, flags, _ = self._notify.recvmsg(NOTIFY_DATAGRAM, _NOTIFY_ANCILLARY,
                                                                 _socket.MSG_CMSG_CLOEXEC)
            except OSError:  # (BlockingIOError: drained)
                break
            self.notify_taken += 1
            sender = _notify_sender(ancillary)  # (which also closes any descriptor that came)
            if sender is None or sender != self.leader or flags & _socket.MSG_TRUNC:
                continue
            said_ready, said_status = parse_notify(data)
            ready = ready or said_ready
            status = said_status if said_status is not None else status
        changed = False
        if ready and not self.ready:
            self.ready = changed = True
        if status is not None:  # the batch's last, decoded once however many came
            text = status[:STATUS_MAX].decode("utf-8", "replace")
            if text != self.status_text:
                self.status_text = text
                changed = True
        return changed

    def wait(self) -> Outcome:
        """Block until PID 1 ends; how it ended."""
        if self.outcome is not None:
            return self.outcome
        if self.leader is None:
            raise RuntimeError("the container was not started")
        try:
            _, status = os.waitpid(self.leader, 0)
        except ChildProcessError:
            # Reaped meanwhile by close() or poll() on another thread: theirs is the answer.
            return self.outcome or Outcome("killed", signal.SIGKILL)
        self.outcome = Outcome.from_wait_status(status)
        return self.outcome

    def poll(self) -> Outcome | None:
        """The outcome if PID 1 has ended, else None (never blocks)."""
        if self.outcome is not None or self.leader is None:
            return self.outcome
        try:
            pid, status = os.waitpid(self.leader, os.WNOHANG)
        except ChildProcessError:
            return self.outcome or Outcome("killed", signal.SIGKILL)
        if pid == 0:
            return None
        self.outcome = Outcome.from_wait_status(status)
        return self.outcome

    def signal(self, sig: int, whom: str = "leader") -> None:
        """Send SIG to PID 1 ("leader") or to every process of the machine ("all")."""
        if whom == "all":
            if self._cg is not None:
                self._cg.kill(sig)
            return
        if whom != "leader":
            raise ValueError(f"whom must be 'leader' or 'all', not {whom!r}")
        if self.leader is not None and self.outcome is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, sig)

    def terminate(self) -> None:
        """Ask for an orderly stop: the plan's kill signal (SIGRTMIN+3 when booted)."""
        if self.plan is not None:
            self.signal(self.plan.kill_signal)

    def close(self, leave_run_files: bool = False) -> None:
        """Kill what remains, remove the cgroup everywhere, the veth and the run directory.
        LEAVE_RUN_FILES (a run directory given by the caller, at its last run): its RUN_FILES
        stay for the caller, who removes them with its own files all at once (unlink.py)."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        if self._cg is not None:
            if self.leader is not None and self.outcome is None:
                self._cg.kill(signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.leader, signal.SIGKILL)
                self._reap_leader()
            try:
                self._cg.remove()
            except NsdashError as e:
                errors.append(e.oneline())
        self._give_back()
        if self.dhcp is not None:
            self.dhcp.close()
            self.dhcp = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        for name in ([self._veth] if self._veth else []) + self._extra_veths:
            self._remove_veth(name)
        if self._lease is not None:
            from nsdash.launcher import network

            try:
                network.forget(self.spec.machine)
            except NsdashError as e:
                errors.append(e.oneline())
            self._lease = None
        if self._notify is not None:
            self._notify.close()
            self._notify = None
        if self.console_master is not None:
            os.close(self.console_master)
            self.console_master = None
        if self._run_dir is not None:
            # The machine's own directory only: the shared run/ above it stays, as machines/
            # does.  Removing it when empty (before) raced another machine's start between its
            # mkdir of run/ and of run/NAME, and cost every boot's teardown one more directory
            # removal (on a host whose /run is on disk: a journal commit's wait, ms under I/O)
            # and the next start its mkdir.
            # What this run made there, by name (with -U its PID 1 may have made RUN_DIRS too).
            subdirs = RUN_DIRS if self.plan is not None and self.plan.userns else self._run_subdirs
            files = [] if leave_run_files and self._given_run_dir is not None else self._run_files
            _clear_run_dir(self._run_dir, files, subdirs)
            if self._given_run_dir is None:
                _remove_run_dir(self._run_dir)
        if self.plan is not None:
            _remove_created(self.plan.created_paths)
        _remove_link(self._journal_link)
        if self._image is not None:
            self._image.close()
        if self._id_claim is not None:
            self._id_claim.close()
            self._id_claim = None
        if errors:
            raise NsdashError("; ".join(errors))

    def _reap_leader(self) -> None:
        if self.leader is None or self.outcome is not None:
            return
        try:
            _, status = os.waitpid(self.leader, 0)
            self.outcome = Outcome.from_wait_status(status)
        except ChildProcessError:
            self.outcome = Outcome("killed", signal.SIGKILL)

    @staticmethod
    def _remove_veth(name: str) -> None:
        if not os.path.exists(f"/sys/class/net/{name}"):
            return  # the pair died with the container's network namespace
        from nsdash.system import netlink

        with contextlib.suppress(Exception):
            netlink.delete_link(name)


def _fork_middle(cg: MachineCgroup, early: list[str]) -> tuple[int, list[str]]:
    """Fork the middle child straight into the machine's cgroup2 directory when the kernel can
    and no other thread runs (clone3 CLONE_INTO_CGROUP), which saves the RCU grace period a
    cgroup.procs write waits for; else fork and let the child join EARLY.  Returns (pid, what
    the child still joins)."""
    if cg.layout.unified is not None and early and early[0] == str(cg.main_dir):
        try:
            fd = os.open(cg.main_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return os.fork(), early
        try:
            return sc.fork_into_cgroup(fd), early[1:]
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    return os.fork(), early


def _clone_pid1(cg: MachineCgroup, plan: LaunchPlan, early: list[str]) -> tuple[int, list[str]] | None:
    """Clone PID 1 itself straight into the machine's cgroup2 directory and the plan's new
    namespaces but the cgroup one, which it makes once it has joined the rest of EARLY (the v1
    hierarchies of a hybrid host; child.born_pid1).  One clone3 instead of the middle child's
    fork, unshare, fork and exit, each a copy or a teardown of this process's memory.  Returns
    (pid, what the child still joins), or None where the kernel or the cgroup cannot (no
    clone3, another thread, ...): the middle child then does it, and reports any error."""
    if cg.layout.unified is None or not early or early[0] != str(cg.main_dir):
        return None
    try:
        fd = os.open(cg.main_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return sc.fork_into_cgroup(fd, plan.namespaces & ~sc.CLONE_NEWCGROUP), early[1:]
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # (in the child too: its copy is of no use to it)


def _rmtree(path: Path | str) -> None:
    """shutil.rmtree(ignore_errors=True) without importing shutil (and with it bz2 and lzma)."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    for sub, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(sub, name))
        for name in dirs:
            full = os.path.join(sub, name)
            with contextlib.suppress(OSError):
                os.unlink(full) if os.path.islink(full) else os.rmdir(full)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _remove_run_dir(path: Path) -> None:
    """The run directory, emptied by _clear_run_dir: one rmdir; a walk only when more is left.
    Every boot's teardown does this after PID 1 has gone: _rmtree's stats, listing and os.walk
    cost it about a tenth of nsdash's exit."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return
    except OSError:
        _rmtree(path)


def _clear_run_dir(path: Path, files: list[str], subdirs: list[str] | tuple[str, ...]) -> None:
    """What this run put in its run directory (FILES of RUN_FILES, SUBDIRS of RUN_DIRS), by name."""
    for name in files:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(path, name))
    for name in subdirs:
        _rmtree(os.path.join(path, name))


def _remove_link(made: tuple[str, str] | None) -> None:
    """Remove the --link-journal=guest host symlink we made if it now dangles (the guest removed
    its journal directory).  One that still leads to the tree's journal stays, as nspawn's does:
    `journalctl -m` and `nsdash journal` read a stopped machine's journal through it."""
    if made is None:
        return
    link, target = made
    with contextlib.suppress(OSError):
        if os.readlink(link) == target and not os.path.isdir(link):
            os.unlink(link)


def _socketpair() -> tuple[int, int]:
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    return a.detach(), b.detach()


def _send_fd(sock_fd: int, data: bytes, fd: int) -> None:
    sock = _socket.socket(fileno=sock_fd)
    try:
        sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))])
    finally:
        sock.detach()


def _receive_console(sock_fd: int) -> int:
    """The console's master, sent by PID 1 before its exec (child.open_console): already
    queued, so a non-blocking receive finds it.  Non-blocking and close-on-exec here."""
    sock = _socket.socket(fileno=sock_fd)
    try:
        sock.setblocking(False)
        try:
            _, ancillary, _, _ = sock.recvmsg(1, _socket.CMSG_SPACE(4))
        except BlockingIOError:
            ancillary = []
    finally:
        sock.detach()
    fds = [struct.unpack("i", d[:4])[0] for level, kind, d in ancillary
           if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(d) >= 4]
    if not fds:
        raise NsdashError("the container's init started without its console",
                          "run with NSDASH_DEBUG=1 for details")
    os.set_inheritable(fds[0], False)
    os.set_blocking(fds[0], False)
    return fds[0]


def parse_notify(data: bytes) -> tuple[bool, bytes | None]:
    """Whether one sd_notify datagram says READY=1, and its STATUS= value, read as systemd-nspawn
    reads its payload's: a C string (up to the first NUL), tags split at each '\n' and '\r', an
    exact READY=1 tag, and the datagram's first STATUS= tag (as nspawn's strv_find_startswith)."""
    ready, status = False, None
    for tag in data.split(b"\0", 1)[0].replace(b"\r", b"\n").split(b"\n"):
        if tag == b"READY=1":
            ready = True
        elif status is None and tag.startswith(b"STATUS="):
            status = tag[7:]
    return ready, status


def _notify_sender(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The PID in a datagram's SCM_CREDENTIALS, None without them; passed descriptors that
    did arrive (none should: no room is given) are closed."""
    sender = None
    for level, kind, data in ancillary:
        if level != _socket.SOL_SOCKET:
            continue
        if kind == _socket.SCM_CREDENTIALS and len(data) == _UCRED.size:
            sender = _UCRED.unpack(data)[0]
        elif kind == _socket.SCM_RIGHTS:
            for (fd,) in struct.iter_unpack("i", data[:len(data) - len(data) % 4]):
                with contextlib.suppress(OSError):
                    os.close(fd)
    return sender


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        data = os.read(fd, 4096)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def _remove_created(paths_: tuple[str, ...]) -> None:
    """Remove the empty mount points the plan made in the tree (not the user's files)."""
    for p in reversed(paths_):
        with contextlib.suppress(OSError):
            if os.path.isdir(p) and not os.path.islink(p):
                os.rmdir(p)
            elif os.path.isfile(p) and os.path.getsize(p) == 0:
                os.unlink(p)
