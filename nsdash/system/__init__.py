"""Thin, policy-free wrappers over the kernel and the host.

One function per system call (syscalls), cgroupfs layout and paths (cgroupfs),
state locations (paths).  Nothing here decides anything; callers do.
"""
