"""The files a real node boot reads from its image server: turn an ``strace`` of nfs-ganesha
during one boot into the data file that `bench/storm.py` replays (bench/data/boot-reads-*.txt).

How bench/data/boot-reads-debian12.txt was recorded (as root, once)::

    dim lab up --dir /var/tmp/dst-lab --namespace dstboot --nodes 1 --no-bmcs --debian 12
    eval "$(dim lab env --dir /var/tmp/dst-lab)"; dim node switch node01 debian12
    strace -f -y -qq -e trace=open_by_handle_at,openat,pread64,preadv,preadv2,read,\\
        getdents64,readlinkat -o boot.strace -p <ganesha's pid>        # in the background
    dim lab boot --dir /var/tmp/dst-lab node01                         # until "up"
    kill <strace's pid>
    .venv/bin/python bench/boot_reads.py boot.strace /var/tmp/dst-lab/state debian12 node01 \\
        > bench/data/boot-reads-debian12.txt

ganesha's own system calls are what the node asked over NFS (minus what the node's cache
spared it), from the initramfs mounting the root to systemd's multi-user target: ``-y``
names the file behind each descriptor. Each line of the output is one operation, in the order
of the boot (first occurrence)::

    read  image usr/lib/systemd/systemd 92544 1868632   # bytes read, size of the file
    list  image usr/lib/systemd/system                  # a directory read (READDIR)
    link  image sbin                                    # a symbolic link read (READLINK)
    read  node  etc/passwd 1021 1021                    # the node's read-write export

``image`` paths are below the image's live tree, ``node`` paths below the node's replica.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

CALL = re.compile(r"^\d+ (preadv2?|pread64|getdents64|readlinkat)\(\d+<([^>]*)>, (.*)$")
RESULT = re.compile(r"= (\d+)$")
OFFSET = re.compile(r"\], \d+, (\d+)(?:, \d+)?\)")
LENGTH = re.compile(r"iov_len=(\d+)")


def parse(lines: list[str], roots: dict[str, str]) -> list[tuple[str, str, str, int]]:
    """(kind, export, relative path, bytes) per operation, bytes summed over a file's reads."""
    order: dict[tuple[str, str, str], int] = {}
    for line in lines:
        match = CALL.match(line)
        if match is None:
            continue
        call, path, rest = match.groups()
        path = path.replace("\\\\", "\\")  # strace writes a backslash in a name as two
        export = next((name for name, root in roots.items() if path.startswith(root)), None)
        if export is None:
            continue
        relative = path[len(roots[export]) :].lstrip("/")
        if call == "getdents64":
            order.setdefault(("list", export, relative), 0)
        elif call == "readlinkat":
            if rest.startswith('""'):  # the link itself, opened O_PATH: a READLINK
                order.setdefault(("link", export, relative), 0)
        else:
            result = RESULT.search(line)
            lengths = LENGTH.findall(rest)
            count = int(result.group(1)) if result else sum(int(n) for n in lengths)
            key = ("read", export, relative)
            order[key] = order.get(key, 0) + count
    return [(kind, export, path, count) for (kind, export, path), count in order.items()]


def main() -> None:
    trace, state, image, node = sys.argv[1:5]
    roots = {
        "image": f"{state}/images/{image}/live",
        "node": f"{state}/nodes/{node}/{image}",
    }
    lines = Path(trace).read_text(errors="replace").splitlines()
    operations = parse(lines, roots)
    recorded = "How " + "\n\n".join(__doc__.split("How ", 1)[1].split("\n\n", 2)[:2])
    print("\n".join(f"# {line}".rstrip() for line in recorded.splitlines()))
    print(f"# image {image}, node {node}: kind export path [bytes read, size]")
    for kind, export, path, count in operations:
        if kind == "read":
            size = os.lstat(Path(roots[export]) / path).st_size
            print(f"read {export} {path} {count} {size}")
        elif path:
            print(f"{kind} {export} {path}")
        else:
            print(f"{kind} {export} .")


if __name__ == "__main__":
    main()
