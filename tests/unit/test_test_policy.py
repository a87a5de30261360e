"""The suite's own rules (tests/conftest.py), proved on tiny test files in a child pytest.

Under CI=true every kind of skip fails; expected failures stay expected; a hang fails the test
that hangs, within its timeout, and the session's fixtures still run their clean-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SKIPS = {
    "bare": "def test_x():\n    pytest.skip('no daemon')\n",
    "mark": "@pytest.mark.skip(reason='later')\ndef test_x():\n    pass\n",
    "skipif": "@pytest.mark.skipif(True, reason='not here')\ndef test_x():\n    pass\n",
    "importorskip": "def test_x():\n    pytest.importorskip('no_such_module_dim')\n",
    "fixture": (
        "@pytest.fixture\ndef daemon():\n    pytest.skip('no daemon')\n\n"
        "def test_x(daemon):\n    pass\n"
    ),
    "module": "pytest.skip('whole module', allow_module_level=True)\n\ndef test_x():\n    pass\n",
    "module-importorskip": "pytest.importorskip('no_such_module_dim')\n\ndef test_x():\n    pass\n",
}


def run_pytest(folder: Path, files: dict[str, str], *, ci: bool, args: tuple[str, ...] = ()):
    """pytest on ``files`` (name: body) in ``folder``, tests/conftest.py loaded as a plugin."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / name).write_text("import time\n\nimport pytest\n\n\n" + body)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci:
        env["CI"] = "true"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, "-c", os.devnull, "--rootdir", str(folder), "-rA", *args, *sorted(files)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def skipping(tmp_path_factory: pytest.TempPathFactory):
    """One child pytest over a file per kind of skip, without CI and with CI=true."""
    files = {f"test_{kind}.py": body for kind, body in SKIPS.items()}
    folder = tmp_path_factory.mktemp("skips")
    keep_going = ("--continue-on-collection-errors",)
    return run_pytest(folder, files, ci=False), run_pytest(folder, files, ci=True, args=keep_going)


@pytest.mark.parametrize("kind", sorted(SKIPS))
def test_every_kind_of_skip_fails_under_ci_and_only_skips_without_it(skipping, kind: str) -> None:
    laptop, ci = skipping
    assert laptop.returncode == 0, laptop.stdout
    assert f"SKIPPED [1] test_{kind}.py:" in laptop.stdout, laptop.stdout
    assert f"{len(SKIPS)} skipped in" in laptop.stdout.splitlines()[-1], laptop.stdout

    assert ci.returncode != 0, ci.stdout
    failed = [line for line in ci.stdout.splitlines() if f"test_{kind}.py" in line]
    message = "skipped under CI=true, which counts as a failure"
    assert any(message in line for line in failed), ci.stdout
    assert "skipped" not in ci.stdout.splitlines()[-1], ci.stdout  # not one skip left


def test_under_ci_a_strict_xfail_and_a_pass_still_pass(tmp_path: Path) -> None:
    body = textwrap.dedent(
        """
        @pytest.mark.xfail(strict=True, raises=ZeroDivisionError, reason='known')
        def test_known():
            1 / 0

        def test_fine():
            assert True
        """
    )
    ci = run_pytest(tmp_path, {"test_tiny.py": body}, ci=True)
    assert ci.returncode == 0, ci.stdout
    assert "1 passed, 1 xfailed" in ci.stdout.splitlines()[-1], ci.stdout


def test_a_test_that_hangs_fails_at_its_timeout_and_its_fixtures_clean_up(
    tmp_path: Path,
) -> None:
    cleaned = tmp_path / "cleaned"
    body = textwrap.dedent(
        f"""
        @pytest.fixture(scope='session')
        def lab():
            yield
            open({str(cleaned)!r}, 'w').write('down')

        @pytest.mark.timeout(1)
        def test_hangs(lab):
            time.sleep(60)

        def test_next(lab):
            assert True
        """
    )
    run = run_pytest(tmp_path, {"test_tiny.py": body}, ci=True)
    assert run.returncode != 0, run.stdout
    assert "FAILED test_tiny.py::test_hangs - Failed: Timeout (>1.0s)" in run.stdout, run.stdout
    assert "1 failed, 1 passed" in run.stdout.splitlines()[-1], run.stdout
    assert cleaned.read_text() == "down"  # the session fixture's teardown ran
