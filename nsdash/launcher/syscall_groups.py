"""Named system-call groups and the container's allow-list policy (pure data and logic).

The group names and their members follow systemd's (systemd.exec(5), "System
Call Filtering"; `systemd-analyze syscall-filter` prints them), so an
--system-call-filter=@mount written for systemd-nspawn means the same here.
The member lists match systemd 252 plus the calls later kernels added to
those groups; names only some architectures have are kept, and the compiler
skips what the running architecture lacks.

The default policy is systemd-nspawn's: a set of groups every container gets,
some single calls, and groups that open only when the container keeps the
capability that governs them.  Everything else a libc could know about is
refused with EPERM; calls newer than this table get ENOSYS so a libc falls
back to an older call instead of failing (nsdash.launcher.seccomp).

Imported on the spawn path (option validation), so standard library only.
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# systemd's named groups; an entry starting with '@' pulls in that group.
GROUPS: dict[str, tuple[str, ...]] = {
    "@aio": _words("""
        io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup io_submit
        io_uring_enter io_uring_register io_uring_setup
    """),
    "@basic-io": _words("""
        _llseek close close_range dup dup2 dup3 lseek pread64 preadv preadv2 pwrite64 pwritev
        pwritev2 read readv write writev
    """),
    "@chown": _words("""
        chown chown32 fchown fchown32 fchownat lchown lchown32
    """),
    "@clock": _words("""
        adjtimex clock_adjtime clock_adjtime64 clock_settime clock_settime64 settimeofday
    """),
    "@cpu-emulation": _words("""
        modify_ldt subpage_prot switch_endian vm86 vm86old
    """),
    "@debug": _words("""
        lookup_dcookie perf_event_open pidfd_getfd ptrace rtas s390_runtime_instr
        sys_debug_setcontext
    """),
    "@default": _words("""
        arch_prctl brk cacheflush clock_getres clock_getres_time64 clock_gettime clock_gettime64
        clock_nanosleep clock_nanosleep_time64 execve exit exit_group futex futex_time64
        futex_waitv get_robust_list get_thread_area getegid getegid32 geteuid geteuid32 getgid
        getgid32 getgroups getgroups32 getpgid getpgrp getpid getppid getrandom getresgid
        getresgid32 getresuid getresuid32 getrlimit getsid gettid gettimeofday getuid getuid32
        membarrier mmap mmap2 mprotect munmap nanosleep pause prlimit64 restart_syscall
        riscv_flush_icache riscv_hwprobe rseq rt_sigreturn sched_getaffinity sched_yield
        set_robust_list set_thread_area set_tid_address set_tls sigreturn time ugetrlimit
        uretprobe
    """),
    "@file-system": _words("""
        access chdir chmod close creat faccessat faccessat2 fallocate fchdir fchmod fchmodat
        fchmodat2 fcntl fcntl64 fgetxattr flistxattr fremovexattr fsetxattr fstat fstat64
        fstatat64 fstatfs fstatfs64 ftruncate ftruncate64 futimesat getcwd getdents getdents64
        getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch lgetxattr link
        linkat listxattr llistxattr lremovexattr lsetxattr lstat lstat64 mkdir mkdirat mknod
        mknodat newfstatat oldfstat oldlstat oldstat open openat openat2 readlink readlinkat
        removexattr rename renameat renameat2 rmdir setxattr stat stat64 statfs statfs64 statx
        symlink symlinkat truncate truncate64 unlink unlinkat utime utimensat utimensat_time64
        utimes
    """),
    "@io-event": _words("""
        _newselect epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
        epoll_wait epoll_wait_old eventfd eventfd2 poll ppoll ppoll_time64 pselect6
        pselect6_time64 select
    """),
    "@ipc": _words("""
        ipc memfd_create mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
        mq_timedsend mq_timedsend_time64 mq_unlink msgctl msgget msgrcv msgsnd pipe pipe2
        process_madvise process_vm_readv process_vm_writev semctl semget semop semtimedop
        semtimedop_time64 shmat shmctl shmdt shmget
    """),
    "@keyring": _words("""
        add_key keyctl request_key
    """),
    "@memlock": _words("""
        mlock mlock2 mlockall munlock munlockall
    """),
    "@module": _words("""
        delete_module finit_module init_module
    """),
    "@mount": _words("""
        chroot fsconfig fsmount fsopen fspick mount mount_setattr move_mount open_tree
        pivot_root umount umount2
    """),
    "@network-io": _words("""
        accept accept4 bind connect getpeername getsockname getsockopt listen recv recvfrom
        recvmmsg recvmmsg_time64 recvmsg send sendmmsg sendmsg sendto setsockopt shutdown socket
        socketcall socketpair
    """),
    "@obsolete": _words("""
        _sysctl afs_syscall bdflush break create_module ftime get_kernel_syms getpmsg gtty idle
        lock mpx prof profil putpmsg query_module security sgetmask ssetmask stime stty sysfs
        tuxcall ulimit uselib ustat vserver
    """),
    "@pkey": _words("""
        pkey_alloc pkey_free pkey_mprotect
    """),
    "@privileged": _words("""
        @chown @clock @module @raw-io @reboot @swap _sysctl acct bpf capset chroot fanotify_init
        fanotify_mark nfsservctl open_by_handle_at pivot_root quotactl quotactl_fd setdomainname
        setfsuid setfsuid32 setgroups setgroups32 sethostname setresuid setresuid32 setreuid
        setreuid32 setuid setuid32 vhangup
    """),
    "@process": _words("""
        capget clone clone3 execveat fork getrusage kill pidfd_open pidfd_send_signal prctl
        rt_sigqueueinfo rt_tgsigqueueinfo setns swapcontext tgkill times tkill unshare vfork
        wait4 waitid waitpid
    """),
    "@raw-io": _words("""
        ioperm iopl pciconfig_iobase pciconfig_read pciconfig_write s390_pci_mmio_read
        s390_pci_mmio_write
    """),
    "@reboot": _words("""
        kexec_file_load kexec_load reboot
    """),
    "@resources": _words("""
        ioprio_set mbind migrate_pages move_pages nice sched_setaffinity sched_setattr
        sched_setparam sched_setscheduler set_mempolicy set_mempolicy_home_node setpriority
        setrlimit
    """),
    "@setuid": _words("""
        setgid setgid32 setgroups setgroups32 setregid setregid32 setresgid setresgid32
        setresuid setresuid32 setreuid setreuid32 setuid setuid32
    """),
    "@signal": _words("""
        rt_sigaction rt_sigpending rt_sigprocmask rt_sigsuspend rt_sigtimedwait
        rt_sigtimedwait_time64 sigaction sigaltstack signal signalfd signalfd4 sigpending
        sigprocmask sigsuspend
    """),
    "@swap": _words("""
        swapoff swapon
    """),
    "@sync": _words("""
        fdatasync fsync msync sync sync_file_range sync_file_range2 syncfs
    """),
    "@system-service": _words("""
        @aio @basic-io @chown @default @file-system @io-event @ipc @keyring @memlock @network-io
        @process @resources @setuid @signal @sync @timer arm_fadvise64_64 capget capset
        copy_file_range fadvise64 fadvise64_64 flock get_mempolicy getcpu getpriority ioctl
        ioprio_get kcmp madvise mremap name_to_handle_at oldolduname olduname personality
        readahead readdir remap_file_pages sched_get_priority_max sched_get_priority_min
        sched_getattr sched_getparam sched_getscheduler sched_rr_get_interval
        sched_rr_get_interval_time64 sched_yield sendfile sendfile64 setfsgid setfsgid32
        setfsuid setfsuid32 setpgid setsid splice sysinfo tee umask uname userfaultfd vmsplice
    """),
    "@timer": _words("""
        alarm getitimer setitimer timer_create timer_delete timer_getoverrun timer_gettime
        timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
        timerfd_gettime64 timerfd_settime timerfd_settime64 times
    """),
}

# Calls the kernel declares that no group above names (some exist on one
# architecture only).  They and every group member form the "known" table:
# known calls the policy does not allow fail with EPERM, anything newer ENOSYS.
_UNGROUPED = _words("""
    arc_gettls arc_settls arc_usr_cmpxchg atomic_barrier atomic_cmpxchg_32 cachectl dipc
    exec_with_loader execv futex_requeue futex_wait futex_wake getdomainname getdtablesize
    gethostname getpagesize getxgid getxpid getxuid kern_features landlock_add_rule
    landlock_create_ruleset landlock_restrict_self map_shadow_stack memfd_secret memory_ordering
    mincore multiplexer old_adjtimex oldumount or1k_atomic osf_fstat osf_fstatfs osf_fstatfs64
    osf_getdirentries osf_getdomainname osf_getitimer osf_getrusage osf_getsysinfo
    osf_gettimeofday osf_lstat osf_mount osf_proplist_syscall osf_select
    osf_set_program_attributes osf_setitimer osf_setsysinfo osf_settimeofday osf_shmat
    osf_sigprocmask osf_sigstack osf_stat osf_statfs osf_statfs64 osf_swapon osf_syscall
    osf_sysinfo osf_usleep_thread osf_utimes osf_utsname osf_wait4 perfctr process_mrelease
    s390_guarded_storage s390_sthyi sched_get_affinity sched_set_affinity seccomp sethae setpgrp
    spu_create spu_run syscall syslog sysmips timerfd utrap_install
""")


def _flatten(name: str, seen: frozenset[str] = frozenset()) -> frozenset[str]:
    if not name.startswith("@"):
        return frozenset({name})
    if name in seen:  # a group that names itself, directly or not: a table bug, not a loop
        raise ValueError(f"system-call group {name} includes itself")
    out: set[str] = set()
    for item in GROUPS[name]:
        out |= _flatten(item, seen | {name})
    return frozenset(out)


KNOWN: frozenset[str] = frozenset().union(*(_flatten(g) for g in GROUPS), _UNGROUPED)
GROUPS["@known"] = tuple(sorted(KNOWN))


def expand(item: str) -> frozenset[str]:
    """A call name or an @group -> the call names it stands for (KeyError if unknown)."""
    if item.startswith("@"):
        return _flatten(item)
    if item not in KNOWN:
        raise KeyError(item)
    return frozenset({item})


# ---------------------------------------------------------------- the default policy
# What systemd-nspawn lets every container do: ordinary process, file, socket,
# IPC and timer work, mounting inside its own mount namespace, and changing
# its own credentials.
CONTAINER_GROUPS = ("@aio", "@basic-io", "@chown", "@default", "@file-system", "@io-event", "@ipc",
                    "@mount", "@network-io", "@process", "@resources", "@setuid", "@signal", "@sync",
                    "@timer")

# Single calls no group above holds that ordinary programs use.  seccomp is
# here as in nspawn 252: a filter can only narrow what the container may do,
# and systemd inside sandboxes its own services with it.
CONTAINER_CALLS = _words("""
    arm_fadvise64_64 brk capget capset copy_file_range fadvise64 fadvise64_64 flock get_mempolicy
    getcpu getpriority getrandom ioctl ioprio_get kcmp madvise mincore mprotect mremap
    name_to_handle_at oldolduname olduname personality readahead readdir remap_file_pages
    sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
    sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_yield seccomp
    sendfile sendfile64 setdomainname setfsgid setfsgid32 setfsuid setfsuid32 sethostname setpgid
    setsid splice sysinfo tee umask uname userfaultfd vmsplice
""")

# Allowed only while the container keeps the capability that governs them
# (in its bounding set: the default set, plus --capability, minus
# --drop-capability).  Without it the kernel would refuse them anyway; the
# filter makes that hold even where a kernel check is missing or namespaced.
BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_TIME": ("@clock",),
    "CAP_SYS_MODULE": ("@module",),
    "CAP_SYS_RAWIO": ("@raw-io",),
    "CAP_IPC_LOCK": ("@memlock",),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("ptrace", "process_vm_readv", "process_vm_writev"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYSLOG": ("syslog",),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
}

# Never in the default policy, whatever capability is kept, because what they
# reach is not namespaced (the keyring, BPF, perf, fanotify of the whole
# mount, quotas, kexec, swap) or they bypass the mount tree
# (open_by_handle_at).  Only an explicit --system-call-filter=NAME opens one.
REFUSED = _words("""
    @cpu-emulation @keyring @obsolete @pkey @swap bpf fanotify_init fanotify_mark kexec_file_load
    kexec_load lookup_dcookie nfsservctl open_by_handle_at perf_event_open quotactl quotactl_fd
""")


def allowed_calls(capabilities: frozenset[str] | set[str], allow: tuple[str, ...] = (),
                  deny: tuple[str, ...] = ()) -> frozenset[str]:
    """The call names the container may make.

    CAPABILITIES is the container's bounding set; ALLOW and DENY are names and
    @groups from --system-call-filter / SystemCallFilter= (a '~' list is DENY).
    As in nspawn, a denied call stays denied even if a group or ALLOW names it.
    """
    items = [*CONTAINER_GROUPS, *CONTAINER_CALLS, *allow]
    for cap, granted in BY_CAPABILITY.items():
        if cap in capabilities:
            items.extend(granted)
    allowed = frozenset().union(*(expand(i) for i in items))
    denied = frozenset().union(*(expand(d) for d in deny))
    return allowed - denied


def check_name(item: str) -> str | None:
    """None if ITEM is a known call or group, else the reason it is not."""
    if item.startswith("@"):
        return None if item in GROUPS else "not a system-call group"
    if item in KNOWN:
        return None
    return "not a known system call"
