"""The dashboard on a lab: an admin powers a node on from its page, the lab's simulated IPMI
BMC starts its QEMU, and the node's cell turns booting, then up, without a reload; a reader's
power request is refused."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from dim.lab.bmcs import start_bmcs
from dim.lab.daemons import dim_argv, ganesha_pid_files
from tests.browser import chromium
from tests.e2e.conftest import Lab
from tests.unit.api.test_api import free_port

pytestmark = pytest.mark.e2e

NODE = "node06"
SHOTS = Path(__file__).resolve().parents[2] / "docs"


def test_an_admin_powers_a_node_on_from_the_dashboard_and_sees_it_come_up_live(
    lab: Lab, tmp_path: Path
) -> None:
    credentials = start_bmcs(lab.folder, [NODE], say=lab.say)
    tokens_file = tmp_path / "api-tokens"
    tokens = {}
    for name, role in (("ops", "admin"), ("helpdesk", "reader")):
        added = lab.dim("api", "token", "add", name, "--role", role, "--tokens", str(tokens_file))
        tokens[role] = added.stdout.split()[-1]
    lab.dim("power", "off", NODE, "--yes", "--credentials", str(credentials))
    port = free_port()
    log = tmp_path / "api.log"
    api = subprocess.Popen(
        [*dim_argv(lab.folder), "api", "--port", str(port), "--tokens", str(tokens_file),
         "--credentials", str(credentials), "--root", str(lab.folder / "root"),
         "--nfs-pid-file", str(ganesha_pid_files(lab.folder)[0])],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with chromium() as browser:
            _admin_powers_on(browser, port, tokens["admin"], tmp_path)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/#token={tokens['reader']}")
            page.wait_for_selector("body[data-nodes]")
            refused = page.evaluate(
                """async (node) => (await fetch(`/api/v1/nodes/${node}/power`, {method: "POST",
                    headers: {Authorization: "Bearer " + sessionStorage.getItem("dim-token"),
                              "Content-Type": "application/json"},
                    body: JSON.stringify({action: "off"})})).status""",
                NODE,
            )
            assert refused == 403
    finally:
        api.terminate()
        api.wait(timeout=15)
        lab.dim("power", "off", NODE, "--yes", "--credentials", str(credentials), check=False)
        print(log.read_text()[-3000:])


def _admin_powers_on(browser, port: int, token: str, tmp_path: Path) -> None:
    deadline = time.monotonic() + 30
    while True:  # dim api listening
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 700})
            page.goto(f"http://127.0.0.1:{port}/#token={token}")
            break
        except Exception:
            page.close()
            assert time.monotonic() < deadline, "dim api did not answer"
            time.sleep(0.2)
    page.wait_for_selector("body[data-nodes]")
    page.goto(f"http://127.0.0.1:{port}/#/node/{NODE}")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#power-on")
    page.wait_for_selector("#job-state")
    assert page.inner_text("#job-state") == "power on: done", page.inner_text("main")
    page.goto(f"http://127.0.0.1:{port}/#/")
    page.wait_for_selector("body[data-nodes]")
    page.evaluate(f"document.body.dataset.watch = '{NODE}'")
    seen = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = page.evaluate("document.body.dataset.watchedState || ''")
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == "up":
            break
        time.sleep(0.2)
    # the page was never reloaded: the feed's boot event and the refreshes redrew the cell
    assert seen[-1] == "up" and "booting" in seen, seen
    folder = SHOTS if os.environ.get("DIM_SCREENSHOTS") == "docs" else tmp_path
    page.screenshot(path=str(folder / "dashboard-lab.png"))
    assert page.query_selector_all("#events li"), "the live feed shows the boot"
    page.close()
