"""Machines on other hosts: `nsdash -H [USER@]HOST[:PORT] VERB ...` over the user's ssh.

protocol: the JSON-lines wire format and its version; target: -H's syntax and
the ssh command line; ssh: ssh started with pipes on its stdio; server: the far side (`nsdash _remote`, run by sshd);
client: this side, one verb over one connection; watch: the line `_watch` pushes to
the dashboard (hosts.HostWatch reads it).
"""

# The verbs that run over -H: machinectl's, the readers, and spawn (with --detach).
REMOTE_VERBS = frozenset({
    "list", "status", "start", "login", "shell", "poweroff", "reboot", "terminate", "kill",
    "list-images", "ps", "cgls", "cgtop", "journal", "systemctl", "spawn", "set-property",
    "trace", "profile",  # machine-wide (--all, the machine's cgroup): no far PID to choose
    "_watch",  # internal: the dashboard's far side (nsdash.cli.watch), not typed by users
})
# The verbs that get the client's input and write to its terminal unescaped, as they do locally:
# a console and a command's own output are the user's to see raw (bytes a file may hold).
RAW_VERBS = frozenset({"login", "shell"})
# The verbs that run on a terminal on the far side when this side has one (in and out): there
# cgtop redraws its screen and takes keys, as locally; otherwise its output is escaped lines.
SCREEN_VERBS = frozenset({"cgtop"})
