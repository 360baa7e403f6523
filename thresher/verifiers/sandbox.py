"""Run untrusted Python where it can neither escape nor outlive its deadline.

The preferred isolation is bubblewrap (``bwrap``, Debian's ``bubblewrap``; ``make env`` installs it
where it can). Each run gets new user, pid, network, mount, IPC, UTS and cgroup namespaces, runs as
uid 65534 with every capability dropped, sees a read-only ``/usr`` and Python, its own ``/proc``
(only its own processes), a size-capped tmpfs as its only writable place, and nothing of the
caller's files, environment or other runs. Its process tree lives in a pid namespace whose first
process dies with bwrap, so killing bwrap at the deadline kills everything the program forked,
setsid and double forks included; output goes to files, so no pipe decides when a run is over.
Kernel limits (CPU seconds, address space, file size, open files) and, where this process may
create one, a pids cgroup bound the rest.

Without bwrap (or where the kernel refuses its namespaces) nothing runs: the code verifier refuses with a
one-line error saying how to install bubblewrap. A weaker fallback runs only when asked for
(``SandboxLimits.allow_weak``, ``THRESHER_ALLOW_WEAK_SANDBOX=1``, or ``thresher --allow-weak-sandbox``)
and only as root: a new session, a network namespace when allowed, the same kernel limits, and a uid of
its own for each run (so no run can signal, trace or read another run, the judge or the caller), with
no environment or home of the caller's. As an ordinary user it would share the caller's uid, files and
processes, so it refuses there too. It is not a container: ``SandboxResult.isolation`` says which ran.
Run untrusted code at scale inside a container or VM either way (docs/safety.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Self

from thresher.errors import ExternalError

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
NOBODY = 65534
CGROUP_ROOT = "/sys/fs/cgroup"  # a v2 hierarchy, or v1 hierarchies named by controller below it
INSIDE = "/sandbox"  # where a run's read-only files appear inside bwrap
OUTPUT_CAP = 65536


class SandboxUnavailable(ExternalError):
    """Neither bwrap nor a safe fallback can run untrusted code on this machine."""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock; the whole process tree is killed after it
    cpu_s: int = 10
    memory_mb: int = 1024  # address space
    file_mb: int = 16  # one file's size
    disk_mb: int = 64  # the writable scratch space, all files together (bwrap only)
    open_files: int = 64
    processes: int = 32  # with a pids cgroup (or, in the fallback, RLIMIT_NPROC)
    network: bool = False
    allow_weak: bool = False  # run in the weak fallback where bwrap cannot (root only; see the module docstring)


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    isolation: str  # "bwrap" or "fallback"
    process_cap: str  # "cgroup", "pid-namespace" or "rlimit": what bounded the number of processes
    memory_cap: str = ""  # "cgroup" (the whole run) or "rlimit" (each process's address space)

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


def python_executable() -> str:
    """The real interpreter behind this one (a venv's python is a link into its base prefix)."""
    return os.path.realpath(sys.executable)


@functools.cache
def isolation() -> str:
    """``"bwrap"`` when bubblewrap is installed and the kernel lets it build a sandbox, else ``"fallback"``
    (``THRESHER_SANDBOX=fallback`` forces the fallback, for tests)."""
    if os.environ.get("THRESHER_SANDBOX") == "fallback":
        return "fallback"
    if shutil.which("bwrap"):
        probe = subprocess.run(
            [*_bwrap_prefix(SandboxLimits(), {}), python_executable(), "-I", "-c", "pass"],
            capture_output=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )
        if probe.returncode == 0:
            return "bwrap"
        reason = probe.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        log.warning("bwrap cannot build a sandbox here (%s)", reason[0])
    return "fallback"


def weak_allowed(limits: SandboxLimits) -> bool:
    """Whether the caller asked for the weak fallback (``THRESHER_SANDBOX=fallback`` forces it, for tests)."""
    flags = (os.environ.get("THRESHER_ALLOW_WEAK_SANDBOX", ""), os.environ.get("THRESHER_SANDBOX", ""))
    return limits.allow_weak or flags[0].lower() in ("1", "true", "yes") or flags[1] == "fallback"


def _bwrap_prefix(limits: SandboxLimits, files: dict[str, str]) -> list[str]:
    argv = [
        shutil.which("bwrap") or "bwrap",
        "--unshare-all",
        "--unshare-user",
        "--uid",
        str(NOBODY),
        "--gid",
        str(NOBODY),
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
    ]
    if limits.network:
        argv.append("--share-net")
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    prefix = os.path.dirname(os.path.dirname(python_executable()))  # .../bin/python3 -> its prefix
    if not prefix.startswith("/usr/"):
        argv += ["--ro-bind", prefix, prefix]
    for inside, host in files.items():
        argv += ["--ro-bind", host, f"{INSIDE}/{inside}"]
    # the only writable places: /tmp (3/4 of disk_mb) and /dev/shm (1/4), each a tmpfs of that size; /, /sandbox and /dev
    # are read-only
    shm = max(1, limits.disk_mb // 4)
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(shm << 20), "--tmpfs", "/dev/shm"]
    argv += ["--size", str(max(1, limits.disk_mb - shm) << 20), "--tmpfs", "/tmp", "--remount-ro", "/dev", "--remount-ro", "/"]
    argv += ["--chdir", "/tmp", "--clearenv"]
    for key, value in _env("/tmp").items():
        argv += ["--setenv", key, value]
    return argv + ["--"]


def _env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}


def _others_can_run(path: str) -> bool:
    """Whether a uid of no group of the owner's can reach and run ``path`` (not when it lives under /root, say)."""
    parts = path.split("/")
    try:
        dirs_ok = all(os.stat("/".join(parts[:i]) or "/").st_mode & 0o001 for i in range(1, len(parts)))
        return dirs_ok and os.stat(path).st_mode & 0o005 == 0o005
    except OSError:
        return False


@functools.cache
def fallback_python() -> str | None:
    """The interpreter the weak fallback runs programs with: this one where an unprivileged uid can run it, else the
    system's ``/usr/bin/python3`` (the programs and the wire need the standard library only), else None."""
    for path in (python_executable(), os.path.realpath("/usr/bin/python3")):
        if os.path.isfile(path) and _others_can_run(path):
            return path
    return None


def _unshare(flags: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(flags) == 0


class RunCgroup:
    """Cgroups of one run's own (cgroup v2, or v1's pids and memory hierarchies), when this process may create
    them: ``pids`` caps the run's processes, ``memory`` the memory of all of them together (not per process);
    each is False where no such cgroup could be made."""

    def __init__(self, max_pids: int, memory_bytes: int) -> None:
        self.paths: list[str] = []
        self.pids = self.memory = False
        wanted = {"pids": {"pids.max": str(max_pids)}, "memory": {"memory.max": str(memory_bytes), "memory.swap.max": "0"}}
        v2 = [c for c in wanted if c in _v2_controllers(CGROUP_ROOT)]
        if v2:
            path = _make_cgroup(CGROUP_ROOT, {k: v for c in v2 for k, v in wanted[c].items()}, optional={"memory.swap.max"})
            if path is not None:
                self.paths.append(path)
                self.pids, self.memory = "pids" in v2, "memory" in v2
        v1 = {
            "pids": {"pids.max": str(max_pids)},
            "memory": {"memory.limit_in_bytes": str(memory_bytes), "memory.memsw.limit_in_bytes": str(memory_bytes)},
        }
        for controller, files in v1.items():
            root = os.path.join(CGROUP_ROOT, controller)
            if getattr(self, controller) or not os.path.isfile(os.path.join(root, "cgroup.procs")):
                continue
            path = _make_cgroup(root, files, optional={"memory.memsw.limit_in_bytes"})
            if path is not None:
                self.paths.append(path)
                setattr(self, controller, True)

    def join(self) -> None:
        """Called in the child: move this process into the run's cgroups."""
        for path in self.paths:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def kill_all(self) -> None:
        for path in self.paths:
            for _ in range(50):
                try:
                    with open(os.path.join(path, "cgroup.procs")) as f:
                        pids = [int(p) for p in f.read().split()]
                except OSError:
                    break
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
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.paths = []


def _make_cgroup(root: str, files: dict[str, str], optional: set[str]) -> str | None:
    """A new cgroup under ``root`` with ``files`` written (those in ``optional`` may be missing); None where not allowed."""
    path = os.path.join(root, f"thresher-sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    for name, value in files.items():
        try:
            with open(os.path.join(path, name), "w") as f:
                f.write(value)
        except OSError:
            if name in optional:
                continue
            with contextlib.suppress(OSError):
                os.rmdir(path)
            return None
    return path


def _v2_controllers(root: str) -> list[str]:
    try:
        with open(os.path.join(root, "cgroup.subtree_control")) as f:
            return f.read().split()
    except OSError:
        return []


def set_limits(limits: SandboxLimits) -> None:
    mb = 1024 * 1024
    for kind, value in (
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_AS, limits.memory_mb * mb),
        (resource.RLIMIT_FSIZE, limits.file_mb * mb),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(kind, (value, value))


class Sandbox:
    """One isolated run's place: ``spawn`` starts a process in it, ``close`` kills its whole tree.

    ``files`` maps names to host files shown read-only under ``/sandbox/`` inside (bwrap), or copied
    into the scratch folder (fallback); ``path(name)`` is where the program finds one.
    """

    def __init__(self, limits: SandboxLimits, files: dict[str, str]) -> None:
        self.limits = limits
        self.kind = isolation()
        self.host_dir = tempfile.mkdtemp(prefix="thresher-sandbox-")
        self.scratch = os.path.join(self.host_dir, "scratch")
        os.mkdir(self.scratch)
        self.files = files
        self.uid = NOBODY
        if self.kind == "fallback":
            refusal = self._weak_refusal()
            if refusal is not None:
                shutil.rmtree(self.host_dir, ignore_errors=True)
                raise SandboxUnavailable(refusal)
            for name, host in files.items():
                shutil.copyfile(host, os.path.join(self.host_dir, name))
            os.chmod(self.host_dir, 0o755)  # readable by the unprivileged user the fallback runs as
            self.uid = secrets.randbelow(1 << 30) + (1 << 20)  # a uid of its own: no run can reach another
            os.chown(self.scratch, self.uid, self.uid)
        self.cgroup = RunCgroup(limits.processes, limits.memory_mb << 20)
        self.proc: subprocess.Popen[bytes] | None = None

    def _weak_refusal(self) -> str | None:
        """Why the weak fallback must not run here, or None."""
        if not weak_allowed(self.limits):
            return (
                "no bubblewrap sandbox here (bwrap is missing or the kernel refused its namespaces): install it "
                "(apt-get install bubblewrap); to run untrusted code in the weaker fallback anyway, as root, pass "
                "--allow-weak-sandbox or set THRESHER_ALLOW_WEAK_SANDBOX=1"
            )
        if os.geteuid() != 0:
            return (
                "the weak sandbox needs root (to run each program as a uid of its own); as an ordinary user it would "
                "share your uid, files and processes: install bubblewrap (apt-get install bubblewrap)"
            )
        if fallback_python() is None:
            return (
                f"bwrap is not usable here and an unprivileged uid can run neither {python_executable()} nor /usr/bin/python3: "
                "refusing to run untrusted code as root (apt-get install bubblewrap)"
            )
        return None

    def path(self, name: str) -> str:
        return f"{INSIDE}/{name}" if self.kind == "bwrap" else os.path.join(self.host_dir, name)

    @property
    def process_cap(self) -> str:
        if self.cgroup.pids:
            return "cgroup"
        return "pid-namespace" if self.kind == "bwrap" else "rlimit"

    @property
    def memory_cap(self) -> str:
        """``cgroup``: the run's memory in all its processes together; ``rlimit``: each process's address space only."""
        return "cgroup" if self.cgroup.memory else "rlimit"

    def spawn(self, args: Sequence[str], stdout: IO[Any], stderr: IO[Any], pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
        """Start ``python -I -B ARGS`` inside; stdin is empty, output goes to the given files."""
        python = [python_executable() if self.kind == "bwrap" else fallback_python() or python_executable(), "-I", "-B", *args]
        if self.kind == "bwrap":
            # bwrap's own processes are visible inside (pid 1 is its init): they get no environment either
            argv, env, cwd = _bwrap_prefix(self.limits, self.files) + python, {"PATH": "/usr/bin:/bin"}, self.host_dir
        else:
            argv, env, cwd = python, _env(self.scratch), self.scratch
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            pass_fds=tuple(pass_fds),
            close_fds=True,
            preexec_fn=self._child_setup,
        )  # noqa: PLW1509 - limits and namespaces need it
        return self.proc

    def _child_setup(self) -> None:
        """Runs between fork and exec, in the new process."""
        os.setsid()
        self.cgroup.join()
        set_limits(self.limits)
        if self.kind == "bwrap":
            return
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if not self.limits.network:
            _unshare(CLONE_NEWNET)
        os.setgroups([])
        os.setgid(self.uid)
        os.setuid(self.uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (self.limits.processes, self.limits.processes))

    def wait(self, timeout_s: float) -> tuple[int | None, bool]:
        """The exit status and whether the deadline passed; the tree is killed either way."""
        assert self.proc is not None
        try:
            returncode: int | None = self.proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            returncode, timed_out = None, True
        self.kill()
        if returncode is not None and self.kind == "bwrap" and returncode > 128 and returncode - 128 in _SIGNALS:
            returncode = 128 - returncode  # bwrap reports a signal as 128 + its number
        return returncode, timed_out

    def kill(self) -> None:
        if self.proc is not None:
            kill_session(self.proc)
        self.cgroup.kill_all()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.host_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SIGNALS = {s.value for s in signal.Signals}


def kill_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group a process leads (it was started in a session of its own), and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def read_capped(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(OUTPUT_CAP).decode(errors="replace")
    except OSError:
        return ""


def run_python(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``code`` with this interpreter in the sandbox; output is cut to 64 kB per stream."""
    limits = limits or SandboxLimits()
    with tempfile.TemporaryDirectory(prefix="thresher-program-") as tmp:
        program = os.path.join(tmp, "main.py")
        with open(program, "w") as f:
            f.write(code)
        with Sandbox(limits, {"main.py": program}) as box:
            out_path, err_path = os.path.join(box.host_dir, "stdout"), os.path.join(box.host_dir, "stderr")
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                box.spawn([box.path("main.py")], out, err)
            returncode, timed_out = box.wait(limits.timeout_s)
            stdout, stderr = read_capped(out_path), read_capped(err_path)
            return SandboxResult(returncode, stdout, stderr, timed_out, box.kind, box.process_cap, box.memory_cap)
