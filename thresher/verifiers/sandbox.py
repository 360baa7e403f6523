"""Run untrusted Python in a child process that cannot reach the network or take the machine down.

A small reaper process (``_reaper.py``) runs the program as its child, enforces the wall-clock
timeout and kills and reaps whatever the program left behind. Each run gets a fresh temporary folder as its home and working directory, an empty environment, a
new session (so the whole process group is killed on timeout), and kernel limits: CPU seconds,
address space, file size and open files. When the kernel allows it the child enters a new network
namespace (no interfaces but a downed loopback), and a pids cgroup caps how many processes it may
have (RLIMIT_NPROC does the same for non-root users; root is exempt from it). Inside, a short
prelude removes socket creation and process spawning from Python before the code runs, as a
second fence. ``SandboxResult`` records which fences were up.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
REAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_reaper.py")
PIDS_ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")  # cgroup v1 pids hierarchy, then a v2 root

PRELUDE = """\
import builtins, os, socket, subprocess, sys
def _refused(*args, **kwargs):
    raise PermissionError("the sandbox refuses this call")
for _name in ("socket", "create_connection", "create_server", "socketpair", "fromfd"):
    setattr(socket, _name, _refused)
for _name in ("fork", "forkpty", "system", "popen", "execv", "execve", "execvp", "execvpe", "spawnv", "spawnve",
              "posix_spawn", "posix_spawnp", "kill", "killpg", "setuid", "putenv"):
    if hasattr(os, _name):
        setattr(os, _name, _refused)
subprocess.Popen = _refused
del builtins, _name
"""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock; the whole process group is killed after it
    cpu_s: int = 10
    memory_mb: int = 1024  # address space
    file_mb: int = 16
    open_files: int = 64
    processes: int = 32
    network: bool = False


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    isolated_network: bool  # the child ran in its own network namespace
    process_cap: str  # "cgroup", "rlimit" or "prelude": what bounded the number of processes

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def why(self) -> str:
        """One line saying how the run ended."""
        if self.timed_out:
            return "timed out"
        if self.returncode == 0:
            return "passed"
        if self.returncode is not None and self.returncode < 0:
            name = signal.Signals(-self.returncode).name
            hint = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (killed)", "SIGSEGV": " (crashed)"}.get(name, "")
            return f"killed by {name}{hint}"
        last = next((line for line in reversed(self.stderr.strip().splitlines()) if line.strip()), "")
        return f"exit {self.returncode}: {last[:200]}" if last else f"exit {self.returncode}"


def _unshare(flags: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(flags) == 0


class PidsCgroup:
    """A pids cgroup of its own for one run, when this process may create one; else inactive."""

    def __init__(self, max_pids: int) -> None:
        self.path: str | None = None
        for root in PIDS_ROOTS:
            v1 = root.endswith("/pids") and os.path.isfile(os.path.join(root, "cgroup.procs"))
            if not v1 and not _v2_has_pids(root):
                continue
            path = os.path.join(root, f"thresher-sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                os.mkdir(path)
                with open(os.path.join(path, "pids.max"), "w") as f:
                    f.write(str(max_pids))
            except OSError:
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else None
                continue
            self.path = path
            return

    def join(self) -> None:
        """Called in the child: move this process into the cgroup."""
        if self.path is not None:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def kill_all(self) -> None:
        if self.path is None:
            return
        for _ in range(50):
            try:
                with open(os.path.join(self.path, "cgroup.procs")) as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                return
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.02)


def _v2_has_pids(root: str) -> bool:
    try:
        with open(os.path.join(root, "cgroup.subtree_control")) as f:
            return "pids" in f.read().split()
    except OSError:
        return False


def _child_setup(limits: SandboxLimits, workdir: str, status_fd: int, cgroup: PidsCgroup) -> None:
    """Runs in the child between fork and exec: isolation first, then limits."""
    os.setsid()
    cgroup.join()
    isolated = False
    if not limits.network:
        is_root = os.geteuid() == 0
        isolated = _unshare(CLONE_NEWNET) if is_root else _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    os.write(status_fd, b"1" if isolated else b"0")
    os.close(status_fd)
    mb = 1024 * 1024
    for kind, value in ((resource.RLIMIT_CPU, limits.cpu_s), (resource.RLIMIT_AS, limits.memory_mb * mb),
                        (resource.RLIMIT_FSIZE, limits.file_mb * mb), (resource.RLIMIT_NOFILE, limits.open_files),
                        (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(kind, (value, value))
    if os.geteuid() != 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    os.chdir(workdir)


def run_python(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``code`` with this interpreter in the sandbox; output is cut to 64 kB per stream."""
    limits = limits or SandboxLimits()
    workdir = tempfile.mkdtemp(prefix="thresher-sandbox-")
    read_fd, write_fd = os.pipe()
    status_read, status_write = os.pipe()
    cgroup = PidsCgroup(limits.processes)
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}

        proc = subprocess.Popen(
            [sys.executable, "-I", REAPER, str(limits.timeout_s), str(status_write)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=workdir,
            preexec_fn=lambda: _child_setup(limits, workdir, write_fd, cgroup), pass_fds=(write_fd, status_write), close_fds=True,
        )
        os.close(write_fd)
        os.close(status_write)
        write_fd = status_write = -1
        isolated = os.read(read_fd, 1) == b"1"
        try:
            out, err = proc.communicate((PRELUDE + "\n" + code).encode(), timeout=limits.timeout_s + 15)
        except subprocess.TimeoutExpired:  # the reaper itself is stuck: kill the whole session
            _kill_group(proc.pid)
            out, err = proc.communicate()
        _kill_group(proc.pid)
        try:
            returncode, timed_out = json.loads(os.read(status_read, 4096) or b"[null, true]")
        except ValueError:
            returncode, timed_out = None, True
        cap = "cgroup" if cgroup.path else ("rlimit" if os.geteuid() != 0 else "prelude")
        return SandboxResult(returncode, out[:65536].decode(errors="replace"), err[:65536].decode(errors="replace"),
                             bool(timed_out), isolated, cap)
    finally:
        cgroup.kill_all()
        for fd in (read_fd, write_fd, status_read, status_write):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
