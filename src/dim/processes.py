"""The programs dim starts (rsync, cp, tar, ssh, unshare…): each dies with dim and holds dim's
locks for as long as it runs.

    >>> run(["cp", "-a", "--no-target-directory", "/srv/v/4/etc", "/srv/nodes/n1/rhel9/etc"])
    CompletedProcess(args=[...], returncode=0, stdout='', stderr='')
    >>> with inheriting(lock.fileno()):     # the image store's lock does this
    ...     run(["rsync", ...])               # rsync and its own children hold the lock too

SIGKILL gives dim no chance to stop what it started, so two promises are made when a child is
started, by the kernel rather than by dim:

- **it dies with dim**: the child asks for SIGKILL when its parent dies (Linux's parent-death
  signal, set with ``prctl`` between fork and exec); a child whose parent died before it could
  ask kills itself at once;
- **it holds dim's locks**: the descriptor of every lock held (an image's ``flock``) is passed
  to the child, and so to what the child forks (rsync's receiver and generator). The kernel
  releases a ``flock`` only when the last process holding it is gone: the next command waits
  for a dying rsync instead of removing the staging folder under it.

The parent-death signal follows the *thread* that started the child, not the process: start a
child from the thread that waits for it (:func:`run` does). Forked workers (a
``multiprocessing`` pool) call :func:`die_with_parent` as their initializer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from functools import cache

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_inherited: list[int] = []  # descriptors of the locks held now: every child gets them


def run(
    argv: Sequence[str],
    *,
    capture: bool = True,
    text: bool = True,
    input: str | bytes | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """:func:`subprocess.run` for a child that dies with dim and holds its locks.

    Output is captured (``capture=False`` lets it through to dim's own); a missing program
    raises :class:`FileNotFoundError`, as :func:`subprocess.run` does.
    """
    return subprocess.run(
        list(argv),
        capture_output=capture,
        text=text,
        input=input,
        timeout=timeout,
        env=env,
        cwd=cwd,
        preexec_fn=_child_setup(os.getpid()),
        pass_fds=tuple(_inherited),
    )


@contextlib.contextmanager
def inheriting(fd: int) -> Iterator[None]:
    """Pass ``fd`` (a held lock's descriptor) to every child started meanwhile."""
    _inherited.append(fd)
    try:
        yield
    finally:
        _inherited.remove(fd)


def die_with_parent(parent: int) -> None:
    """In a child of ``parent``: be killed when it dies, or die now if it is gone already."""
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # the parent may have died between fork and prctl: then nobody would send the signal
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _child_setup(parent: int) -> Callable[[], None]:
    _prctl()  # looked up in the parent: the child, between fork and exec, only calls it

    def setup() -> None:
        die_with_parent(parent)

    return setup


@cache
def _prctl() -> Callable[..., int] | None:
    import ctypes  # only dim's commands that start children pay for it

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return None
