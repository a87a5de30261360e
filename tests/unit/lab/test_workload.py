"""How the failover tests read a node's numbered lines (dim.lab.workload.Trace)."""

from dim.lab.workload import Trace


def test_a_trace_with_every_number_once_in_order_is_whole_and_its_longest_gap_is_found():
    trace = Trace.parse("1 20.50\n2 21.05\n3 24.90\n4 25.40\n")
    assert trace.numbers_ok
    assert trace.longest_gap == 3.85


def test_a_lost_or_doubled_line_is_seen():
    assert not Trace.parse("1 1.0\n3 2.0\n").numbers_ok
    assert not Trace.parse("1 1.0\n2 2.0\n2 2.5\n").numbers_ok


def test_since_an_uptime_looks_at_the_current_boot_only():
    # the node rebooted after line 3: its uptime starts again from zero
    trace = Trace.parse("1 20.50\n2 21.05\n3 24.90\n4 8.20\n5 8.70\n6 12.70\n")
    assert trace.since(8.5).numbers == (4, 5, 6)
    assert trace.since(8.5).longest_gap == 4.0
    assert trace.since(21.0).numbers == (6,)  # none written since: the last line alone
