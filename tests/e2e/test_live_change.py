"""A running node sees an image change within seconds, without a reboot (item e).

The node's root is the image's live tree mounted read-only over NFS directly (no overlay,
``actimeo=1``); a change by ``dim image exec`` links each new or changed file into live under
a temporary name and renames it over the old one, and brings the node's replica (its /etc)
along. So a running node sees a new file, even one whose name it had looked up before (no
negative lookup kept), a replaced file's new content, and a new file under /etc; and a process
holding the replaced file open keeps reading the old content: its inode lives on in the
version that holds it, so no stale file handle.

    CI=true .venv/bin/pytest tests/e2e/test_live_change.py
"""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.e2e.conftest import Fleet, Lab

pytestmark = pytest.mark.e2e

NODE = "node02"
WITHIN = 5.0  # seconds from the end of `dim image exec` to the node seeing the change
OLD = "/usr/share/dim-e2e/replaced"
NEW = "/usr/share/dim-e2e/newname"
ETC = "/etc/dim-e2e-live"


def test_a_running_node_sees_added_replaced_and_persistent_files_within_seconds(
    lab: Lab, fleet: Fleet
) -> None:
    # a file to replace later, 1 MB so that reading it is real I/O over NFS
    make_old = f"mkdir -p /usr/share/dim-e2e && head -c 1048576 /dev/urandom > {OLD}"
    lab.dim("image", "exec", "tiny", "--", "sh", "-c", make_old)
    old_digest = hashlib.md5((lab.live("tiny") / OLD.lstrip("/")).read_bytes()).hexdigest()
    lab.wait_for(NODE, f"md5sum < {OLD}", f"{old_digest}  -\n", timeout=30)

    # the node looks the new names up before they exist
    assert lab.run(NODE, f"ls {NEW}")[0] != 0
    assert lab.run(NODE, f"cat {ETC}")[0] != 0
    # a process holds the file open across its replacement, then reads it all
    holder = f"exec 3< {OLD}; sleep 8; md5sum <&3 > /tmp/held; echo $? > /tmp/held.rc"
    lab.ok(NODE, f"(sh -c '{holder}' > /dev/null 2>&1 &)")
    time.sleep(1)

    change = f"echo new > {NEW} && echo replaced > {OLD}.tmp && mv {OLD}.tmp {OLD}"
    change += f" && echo persistent > {ETC}"
    lab.dim("image", "exec", "tiny", "--", "sh", "-c", change)
    changed = time.monotonic()
    # the server's disk: live has the new files, the node's replica the new /etc file
    assert (lab.live("tiny") / NEW.lstrip("/")).read_text() == "new\n"
    assert (lab.replica(NODE, "tiny") / ETC.lstrip("/")).read_text() == "persistent\n"

    lab.wait_for(NODE, f"cat {NEW}", "new\n", timeout=WITHIN)
    lab.wait_for(NODE, f"cat {OLD}", "replaced\n", timeout=WITHIN)
    lab.wait_for(NODE, f"cat {ETC}", "persistent\n", timeout=WITHIN)
    seen = time.monotonic() - changed
    assert seen <= WITHIN, f"the node saw the change after {seen:.1f} s"

    # the holder read the old content through its descriptor, without an error
    lab.wait_for(NODE, "cat /tmp/held.rc", "0\n", timeout=30)
    assert lab.ok(NODE, "cat /tmp/held") == f"{old_digest}  -\n"
    print(f"{NODE} saw the whole change {seen:.1f} s after dim image exec returned")
