"""The programs dim starts die with it and hold its locks (dim.processes)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from dim import processes

SRC = str(Path(processes.__file__).resolve().parents[1])


def _python(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE, text=True
    )


def _children(pid: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            int(c)
            for task in os.listdir(f"/proc/{pid}/task")
            for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        ]
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"process {pid} started no child")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.01)
    return False


def _kill_and_expect_children_gone(parent: subprocess.Popen, children: list[int]) -> None:
    """SIGKILL ``parent`` (dim), then each of ``children`` must be gone within 5 s."""
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    try:
        assert _gone_within(children, 5.0), f"{children} outlived their parent"
    finally:
        for pid in [p for p in children if _alive(p)]:  # only when the test failed
            os.kill(pid, signal.SIGKILL)


def test_a_child_dies_when_dim_is_killed():
    parent = _python(
        """
        from dim import processes
        processes.run(["sleep", "60"])
        """
    )
    children = _children(parent.pid)
    _kill_and_expect_children_gone(parent, children)


def test_a_child_whose_parent_is_gone_already_kills_itself():
    child = _python(
        """
        from dim import processes
        processes.die_with_parent(1)  # not our parent: as if dim died before prctl
        print("still running")
        """
    )
    out, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert out == ""


def test_a_child_holds_the_lock_it_inherits(tmp_path):
    lock = tmp_path / "image.lock"
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        fd = handle.fileno()
        with processes.inheriting(fd):
            inside = processes.run(["readlink", f"/proc/self/fd/{fd}"])
        outside = processes.run(["readlink", f"/proc/self/fd/{fd}"])
    assert inside.stdout.strip() == str(lock)
    assert outside.returncode != 0  # no longer passed on once the lock is released


def test_run_captures_output_and_reports_a_missing_program():
    assert processes.run(["sh", "-c", "echo out; echo err >&2; exit 3"]).returncode == 3
    done = processes.run(["sh", "-c", "echo out; echo err >&2"])
    assert (done.stdout, done.stderr) == ("out\n", "err\n")
    try:
        processes.run(["dim-no-such-program"])
    except FileNotFoundError as exc:
        assert exc.filename == "dim-no-such-program"
    else:
        raise AssertionError("a missing program must raise FileNotFoundError")


def test_a_pool_worker_dies_when_dim_is_killed():
    parent = _python(
        """
        import multiprocessing, os, time
        from dim import processes
        pool = multiprocessing.get_context("fork").Pool(
            2, initializer=processes.die_with_parent, initargs=(os.getpid(),)
        )
        pool.map_async(time.sleep, [60, 60])
        time.sleep(60)
        """
    )
    deadline = time.monotonic() + 10
    children: list[int] = []
    while len(children) < 2 and time.monotonic() < deadline:
        children = _children(parent.pid)
    _kill_and_expect_children_gone(parent, children)
