"""The sandbox's first process: runs the untrusted program as its child and cleans up after it.

It is a child subreaper, so whatever the program forks is re-parented here rather than to the
machine's init (which in a container may never reap), and after the program ends or times out it
kills everything left in its process group and reaps it all. It reads the program on stdin and
reports ``[returncode, timed_out]`` on a pipe whose descriptor it is given, which the program never sees.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def _others_in_group() -> list[int]:
    me, group = os.getpid(), os.getpgrp()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:
                found.append(int(name))
    return found


def main() -> None:
    timeout_s = float(sys.argv[1])
    status = os.fdopen(int(sys.argv[2]), "w")
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    program = sys.stdin.buffer.read()
    child = subprocess.Popen([sys.executable, "-I", "-"], stdin=subprocess.PIPE, close_fds=True)
    timed_out = False
    try:
        child.communicate(program, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        child.kill()
        child.wait()
    except BrokenPipeError:
        child.wait()
    for _ in range(100):  # kill and reap what the program left behind
        pids = _others_in_group()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not pids:
            break
    status.write(json.dumps([child.returncode, timed_out]))
    status.close()


if __name__ == "__main__":
    main()
