"""The lines of a new dnsmasq hosts file that dnsmasq's test mode must see: every line the
installed file lacks, found without splitting the lines the two files share at both ends."""

from __future__ import annotations

import random

import pytest

from dim.services.apply import added_lines


def lines(count: int, tag: str = "") -> list[bytes]:
    return [
        f"52:54:00:00:{n // 256:02x}:{n % 256:02x},10.0.{n // 256}.{n % 256},n{n}{tag}".encode()
        for n in range(count)
    ]


def text(items: list[bytes]) -> bytes:
    return b"".join(item + b"\n" for item in items)


def exact(old: bytes, new: bytes) -> set[str]:
    return {h.decode() for h in set(new.split(b"\n")) - set(old.split(b"\n")) - {b""}}


def test_one_spliced_line_of_a_large_file_is_the_only_one_checked():
    hosts = lines(100_000)
    new = hosts[:50_000] + [b"52:54:00:aa:bb:cc,10.9.9.9,moved"] + hosts[50_001:]
    assert added_lines(text(hosts), text(new)) == ["52:54:00:aa:bb:cc,10.9.9.9,moved"]


def test_a_first_file_is_checked_whole_in_file_order():
    hosts = lines(10)[::-1]
    assert added_lines(b"", text(hosts)) == [h.decode() for h in hosts]


@pytest.mark.parametrize("seed", range(40))
def test_random_edits_are_all_checked(seed):
    """Cut, insert, replace and move lines anywhere (the file's ends too, its last newline):
    each line the old file lacks is checked, and the lines checked beyond those are lines
    of the old file (moved, or near a change)."""
    rng = random.Random(seed)
    old = lines(rng.choice([0, 1, 5, 300]))
    new = list(old)
    for _ in range(rng.randint(1, 6)):
        where = rng.randint(0, len(new))
        action = rng.choice(["cut", "insert", "replace", "move"])
        if action == "cut" and new:
            del new[min(where, len(new) - 1)]
        elif action == "insert":
            new.insert(where, f"52:54:00:ff:ff:{rng.randrange(256):02x},10.1.1.1,x{seed}".encode())
        elif action == "replace" and new:
            new[min(where, len(new) - 1)] = f"52:54:01:00:00:{rng.randrange(256):02x},x".encode()
        elif action == "move" and new:
            new.insert(rng.randint(0, len(new) - 1), new.pop(min(where, len(new) - 1)))
    old_text, new_text = text(old), text(new)
    if rng.random() < 0.3 and new_text:
        new_text = new_text[:-1]  # no newline at the end
    checked = set(added_lines(old_text, new_text))
    assert exact(old_text, new_text) <= checked
    assert checked - exact(old_text, new_text) <= {h.decode() for h in old}
