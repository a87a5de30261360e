"""dim.structs: records that behave as the dataclasses they replace, for dim's uses of them."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from dim.layout.model import Bmc, Cluster, Interface, Node
from dim.structs import FrozenError, field, fields, replace, struct


@struct(frozen=True, slots=True)
class Point:
    """A frozen record with a default, a default factory and a field left out of equality."""

    x: int
    y: int = 0
    tags: dict = field(default_factory=dict)
    note: str = field(default="", compare=False, repr=False)


@struct(slots=True, unsafe_hash=True)
class Counter:
    """A mutable record that hashes all the same, as the model's nodes."""

    name: str
    count: int = 0


@struct(frozen=True, slots=True)
class Normalised:
    """A frozen record that rewrites a field after __init__, as Context and StatePaths do."""

    text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", self.text.strip())


def test_init_takes_fields_by_position_and_name_with_defaults_and_fresh_factories():
    a, b = Point(1), Point(x=1, y=2, note="n")
    assert (a.x, a.y, a.tags, a.note) == (1, 0, {}, "")
    assert (b.x, b.y, b.note) == (1, 2, "n")
    assert a.tags is not Point(1).tags  # one dict each, as default_factory promises
    with pytest.raises(TypeError):
        Point()  # x has no default


def test_equality_and_hash_follow_the_compared_fields_and_the_class():
    assert Point(1, note="a") == Point(1, note="b")
    assert hash(Normalised("a")) == hash(Normalised(" a"))
    with pytest.raises(TypeError):
        hash(Point(1))  # its dict is unhashable, as in a dataclass
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != Counter("1")
    assert Counter("a", 1) == Counter("a", 1) and hash(Counter("a")) == hash(Counter("a"))
    assert len({Counter("a"), Counter("a"), Counter("b")}) == 2


def test_a_mutable_record_without_unsafe_hash_is_unhashable_as_a_dataclass():
    @struct(slots=True)
    class Loose:
        """Equal by value, changeable: no hash."""

        value: int

    assert Loose(1) == Loose(1)
    with pytest.raises(TypeError):
        hash(Loose(1))


def test_a_frozen_record_refuses_assignment_and_deletion_but_a_mutable_one_takes_it():
    point = Point(1)
    with pytest.raises(FrozenError):
        point.x = 2
    with pytest.raises(AttributeError):  # FrozenError is one, as FrozenInstanceError
        del point.y
    counter = Counter("a")
    counter.count = 3
    assert counter.count == 3
    with pytest.raises(AttributeError):
        counter.other = 1  # slots: no attribute beyond the fields


def test_post_init_runs_after_init_and_after_replace():
    assert Normalised("  a ").text == "a"
    assert replace(Normalised("a"), text=" b ").text == "b"


def test_repr_names_the_class_and_the_shown_fields():
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags={})"


def test_replace_and_fields_here_and_in_dataclasses_agree():
    point = Point(1, 2, {"a": 1}, "n")
    assert [f.name for f in fields(Point)] == ["x", "y", "tags", "note"]
    assert [f.name for f in dataclasses.fields(point)] == ["x", "y", "tags", "note"]
    assert dataclasses.is_dataclass(point)
    assert replace(point, y=5) == dataclasses.replace(point, y=5) == Point(1, 5, {"a": 1})
    assert dataclasses.replace(point, y=5).note == "n"
    assert dataclasses.asdict(point) == {"x": 1, "y": 2, "tags": {"a": 1}, "note": "n"}


def test_the_models_cluster_is_replaced_by_dataclasses_with_its_index_rebuilt():
    node = Node("c01", "g", 1, (Interface("boot", "10.0.0.1", "c01"),), None, "s", Bmc("ipmi", "b"))
    cluster = Cluster("c", None, {}, {}, {}, {}, (node,))
    assert cluster.node("c01") is node
    other = Node("c02", "g", 2, node.interfaces, None, "s")
    changed = dataclasses.replace(cluster, nodes=(other,), by_name={})
    assert changed.node("c02") is other and changed.node("c01") is None


def test_records_survive_copy_and_pickle():
    point = Point(1, 2, {"a": 1}, "n")
    for made in (copy.copy(point), copy.deepcopy(point), pickle.loads(pickle.dumps(point))):
        assert made == point and made.note == "n"
    counter = pickle.loads(pickle.dumps(Counter("a", 2)))
    assert counter == Counter("a", 2)


def test_what_struct_does_not_do_is_refused_when_the_class_is_made():
    with pytest.raises(TypeError):

        @struct(slots=False)
        class Unslotted:
            """Slots are the point."""

            value: int

    with pytest.raises(TypeError):

        @struct(slots=True)
        class Disordered:
            """A field without a default after one with."""

            first: int = 0
            second: int

    with pytest.raises(ValueError):

        @struct(slots=True)
        class Shared:
            """One list for every record: what default_factory is for."""

            items: list = []
