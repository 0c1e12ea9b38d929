"""stackops_lab.spawns counts the processes in an strace log: every process the traced shell's tree creates (a
subshell too, a thread not), the lab's shims as one process each."""
from __future__ import annotations

from stackops_lab.spawns import count

# `strace -f -q -e trace=process -e signal=none sh -c 'a=$(echo hi); ls >/dev/null | cat; qemu-system-x86_64
# --version >/dev/null'` on Debian 12: a subshell for $( ), a fork each for the pipeline, a vfork for QEMU, which
# starts a thread (clone3 with CLONE_THREAD); calls interrupted by another process's are <unfinished …> / resumed.
TRACE = r"""
14710 execve("/usr/bin/sh", ["sh", "-c", "a=$(echo hi); ls >/dev/null | ca"...], 0x7ffd5d3a16e0 /* 35 vars */) = 0
14710 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f464627ca10) = 14711
14711 exit_group(0)                     = ?
14711 +++ exited with 0 +++
14710 wait4(-1, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 14711
14710 wait4(-1, 0x7fff818e2eec, WNOHANG, NULL) = -1 ECHILD (No child processes)
14710 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f464627ca10) = 14712
14710 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f464627ca10) = 14713
14710 wait4(-1,  <unfinished ...>
14713 execve("/usr/bin/cat", ["cat"], 0x55b728ee2e58 /* 35 vars */) = 0
14712 execve("/usr/bin/ls", ["ls"], 0x55b728ee2e68 /* 35 vars */) = 0
14713 exit_group(0)                     = ?
14713 +++ exited with 0 +++
14710 <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 14713
14710 wait4(-1,  <unfinished ...>
14712 exit_group(0)                     = ?
14712 +++ exited with 0 +++
14710 <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 14712
14710 wait4(-1, 0x7fff818e30dc, WNOHANG, NULL) = -1 ECHILD (No child processes)
14710 vfork( <unfinished ...>
14714 execve("/usr/bin/qemu-system-x86_64", ["qemu-system-x86_64", "--version"], 0x7ffd /* 35 vars */ <unfinished ...>
14710 <... vfork resumed>)              = 14714
14710 wait4(-1,  <unfinished ...>
14714 <... execve resumed>)             = 0
14714 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, ...}, 88) = 14715
14714 exit_group(0)                     = ?
14715 +++ exited with 0 +++
14714 +++ exited with 0 +++
14710 <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 14714
14710 wait4(-1, 0x7fff818e30bc, WNOHANG, NULL) = -1 ECHILD (No child processes)
14710 exit_group(0)                     = ?
14710 +++ exited with 0 +++
"""

# The lab's systemctl (a shell script) and what it starts, then a program run by the script itself.
SHIM = r"""
100 execve("/usr/bin/sh", ["sh", "-s"], 0x7ffd /* 5 vars */) = 0
100 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 101
101 execve("/usr/local/sbin/systemctl", ["systemctl", "is-active", "libvirtd"], 0x55 /* 5 vars */) = 0
101 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 102
102 execve("/usr/bin/mkdir", ["mkdir", "-p", "/run/stackops-systemctl"], 0x55 /* 5 vars */) = 0
101 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 103
103 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 104
104 execve("/usr/bin/cat", ["cat", "/run/x.pid"], 0x55 /* 5 vars */) = 0
100 vfork( <unfinished ...>
105 execve("/usr/bin/ss", ["ss", "-Hltn"], 0x55 /* 5 vars */ <unfinished ...>
100 <... vfork resumed>)              = 105
105 <... execve resumed>)             = 0
"""


def test_processes_subshells_count_threads_do_not() -> None:
    spawned = count(TRACE)
    assert spawned.commands == ["(subshell)", "/usr/bin/ls", "/usr/bin/cat", "/usr/bin/qemu-system-x86_64"]
    assert spawned.count == 4 and spawned.lab == []


def test_a_lab_shim_is_one_process_and_what_it_starts_is_the_labs() -> None:
    spawned = count(SHIM)
    assert spawned.commands == ["/usr/local/sbin/systemctl", "/usr/bin/ss"]
    assert spawned.lab == ["/usr/bin/mkdir", "(subshell)", "/usr/bin/cat"]
