"""bulk_allocation: the cycle detector paused, and what the block built left old, not lost."""

import gc
import weakref

from dim.allocation import bulk_allocation


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_collector_waits_during_the_block_and_what_it_built_is_not_scanned_as_young():
    young = gc.get_stats()[0]["collections"]
    with bulk_allocation():
        assert not gc.isenabled()
        built = [[k] for k in range(20_000)]
    # the next allocation would start a young collection of the 20,000 lists: none started
    assert gc.get_stats()[0]["collections"] == young
    assert gc.isenabled()
    assert len(built) == 20_000


def test_a_cycle_made_in_the_block_is_still_collected():
    with bulk_allocation():
        cycle = _Cycle()
        gone = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert gone() is None


def test_a_nested_block_leaves_the_collector_to_the_outer_one():
    with bulk_allocation():
        with bulk_allocation():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
