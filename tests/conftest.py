"""Shared test policy: a test may skip on a laptop without root or a daemon, never under CI.

Call :func:`require` at the start of a test (or fixture) that needs something of the machine::

    require(shutil.which("kea-dhcp4") is not None, "kea-dhcp4 is not installed")

With ``CI=true`` in the environment a missing requirement fails the test instead of skipping
it, so that CI can never pass by running nothing.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip (laptop) or fail (CI) unless ``condition`` holds."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (network namespaces, daemons)")


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (apt-get install {package})")
    return path
