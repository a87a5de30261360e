"""Records with slots, made at import for a tenth of what :mod:`dataclasses` costs.

``dim layout check`` and ``dim node list`` start in some 0.2 s, and importing
:mod:`dataclasses` (it imports ``inspect``, ``ast``, ``dis``, ``tokenize``) and making the two
dozen dataclasses of their path (an ``exec`` for each of ``__init__``, ``__eq__``,
``__hash__``, ``__repr__``, ``__setattr__``, ``__delattr__``, ``__getstate__``,
``__setstate__`` of each class) took 130 M of their 380 M instructions. :func:`struct` is
the part of :func:`dataclasses.dataclass` that dim uses, with its meaning::

    @struct(frozen=True, slots=True)
    class Network:
        name: str
        dns: tuple[str, ...] = ()
        by_name: dict = field(default_factory=dict, compare=False, repr=False)

``__init__`` alone is generated (one small ``exec``, when the first record is made: as fast
to call as a dataclass's, which matters for the 400,000 interfaces and nodes of a
100,000-node layout); equality, hash,
``repr``, the refusal to assign a field of a frozen record and pickling are shared functions
over an :func:`operator.attrgetter` of the fields. A struct is a dataclass to the
:mod:`dataclasses` functions (``dataclasses.replace``, ``fields``, ``asdict``,
``is_dataclass``): ``__dataclass_fields__`` is made, by :mod:`dataclasses` itself, the first
time one of them asks; :func:`replace` and :func:`fields` here answer without it.

Not supported (a TypeError says so): inheritance between records, ``order``, ``init=False``
fields, ``ClassVar`` and ``InitVar`` annotations, classes without slots.
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False  # typing's own, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_options: object) -> Callable:
        return lambda function: function


MISSING = object()  # a field without a default
FIELDS = "__struct_fields__"  # a struct's class attribute: its fields, in order


class FrozenError(AttributeError):
    """An assignment to a field of a frozen struct (dataclasses.FrozenInstanceError's role)."""


class Field:
    """One field of a struct: its name, default (or default factory) and whether it takes
    part in equality, hash and ``repr``."""

    __slots__ = ("name", "type", "default", "default_factory", "compare", "repr")

    def __init__(
        self,
        default: object = MISSING,
        default_factory: Callable[[], object] | object = MISSING,
        compare: bool = True,
        repr: bool = True,
    ) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise TypeError("a field cannot have both a default and a default factory")
        self.name, self.type = "", ""
        self.default, self.default_factory = default, default_factory
        self.compare, self.repr = compare, repr

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r})"


def field(
    *,
    default: object = MISSING,
    default_factory: Callable[[], object] | object = MISSING,
    compare: bool = True,
    repr: bool = True,
) -> Any:
    """A field's options, as :func:`dataclasses.field` takes them."""
    return Field(default, default_factory, compare, repr)


@dataclass_transform(field_specifiers=(field,))
def struct(
    cls: type | None = None,
    /,
    *,
    frozen: bool = False,
    slots: bool = True,
    unsafe_hash: bool = False,
) -> Any:
    """The class ``cls`` with slots, ``__init__``, ``__eq__``, ``__repr__`` and, if frozen or
    ``unsafe_hash``, ``__hash__``, as ``@dataclass(frozen=…, slots=True, unsafe_hash=…)``
    would make it."""
    if not slots:
        raise TypeError("a struct has slots: say slots=True")

    def wrap(cls: type) -> type:
        return _make(cls, frozen, unsafe_hash)

    return wrap if cls is None else wrap(cls)


def fields(record: object) -> tuple[Field, ...]:
    """The fields of a struct (class or instance), in order."""
    found = getattr(record, FIELDS, None)
    if found is None:
        raise TypeError(f"{record!r} is not a struct")
    return found


def replace(record: T, /, **changes: object) -> T:
    """A copy of ``record`` with ``changes``, made through its ``__init__`` (as
    :func:`dataclasses.replace`: ``__post_init__`` runs again)."""
    for f in fields(record):
        if f.name not in changes:
            changes[f.name] = getattr(record, f.name)
    return record.__class__(**changes)


def _make(cls: type, frozen: bool, unsafe_hash: bool) -> type:
    if cls.__bases__ != (object,):
        raise TypeError(f"{cls.__name__}: a struct inherits from no class")
    namespace = dict(cls.__dict__)
    declared = _declared(cls.__name__, namespace)
    names = tuple(f.name for f in declared)
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    namespace["__qualname__"] = cls.__qualname__
    namespace["__slots__"] = names
    namespace["__match_args__"] = names
    namespace[FIELDS] = declared
    namespace["__dataclass_fields__"] = _DataclassFields()
    _add_methods(namespace, declared, frozen, unsafe_hash)
    made = type(cls)(cls.__name__, cls.__bases__, namespace)
    made.__init__ = _compile_on_first_call(made, declared, frozen)
    return made


def _declared(name: str, namespace: dict) -> tuple[Field, ...]:
    """The fields that the class body ``namespace`` annotates, their defaults taken out of it
    (a slot and a class attribute cannot share a name)."""
    declared: list[Field] = []
    for field_name, kind in namespace.get("__annotations__", {}).items():
        if "ClassVar" in str(kind) or "InitVar" in str(kind):
            raise TypeError(f"{name}.{field_name}: ClassVar and InitVar are not supported")
        value = namespace.pop(field_name, MISSING)
        if isinstance(value, list | dict | set):
            raise ValueError(f"{name}.{field_name}: a mutable default is shared: use a factory")
        spec = value if isinstance(value, Field) else Field(default=value)
        if declared and _has_default(declared[-1]) and not _has_default(spec):
            raise TypeError(f"{name}.{field_name}: a field without a default follows one with")
        spec.name, spec.type = field_name, kind
        declared.append(spec)
    return tuple(declared)


def _has_default(f: Field) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def _add_methods(namespace: dict, declared: tuple[Field, ...], frozen: bool, hashed: bool) -> None:
    """Equality, hash, ``repr`` (unless the class has its own) and, frozen, the refusals and
    pickling, shared functions over the fields' values."""
    compared = [f.name for f in declared if f.compare]
    values = attrgetter(*compared) if compared else (lambda _record: ())
    namespace.setdefault("__eq__", _equality(values))
    # as dataclass's: a mutable record that is equal by value has no hash, unless asked for
    namespace["__hash__"] = _hash(values) if frozen or hashed else None
    namespace.setdefault("__repr__", _representation(tuple(f.name for f in declared if f.repr)))
    if frozen:
        namespace["__setattr__"] = _refuse_assignment
        namespace["__delattr__"] = _refuse_deletion
        namespace["__getstate__"] = _state(tuple(f.name for f in declared))
        namespace["__setstate__"] = _set_state


def _compile_on_first_call(cls: type, declared: tuple[Field, ...], frozen: bool) -> Callable:
    """``__init__`` until the class's first record: it compiles the real one and hands over,
    so that a class that a command never instantiates costs it no compile (0.6 M
    instructions each: half the classes that ``dim layout check`` imports)."""

    def __init__(self: object, *args: object, **kwargs: object) -> None:
        init = _initializer(cls, declared, frozen)
        type.__setattr__(cls, "__init__", init)
        init(self, *args, **kwargs)

    return __init__


def _initializer(cls: type, declared: tuple[Field, ...], frozen: bool) -> Callable:
    """``__init__``, compiled from its source as dataclasses does: a call costs the same."""
    namespace: dict[str, object] = {"MISSING": MISSING}
    parameters, body = [], []
    for f in declared:
        if f.default_factory is not MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            parameters.append(f"{f.name}=MISSING")
            body.append(f"if {f.name} is MISSING: {f.name} = _factory_{f.name}()")
        elif f.default is not MISSING:
            namespace[f"_default_{f.name}"] = f.default
            parameters.append(f"{f.name}=_default_{f.name}")
        else:
            parameters.append(f.name)
    for f in declared:
        if frozen:  # the slot's own setter: no __setattr__ to pass, faster than object's
            namespace[f"_set_{f.name}"] = getattr(cls, f.name).__set__
            body.append(f"_set_{f.name}(self, {f.name})")
        else:
            body.append(f"self.{f.name} = {f.name}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = f"def __init__(self, {', '.join(parameters)}):\n " + "\n ".join(body or ["pass"])
    exec(source, namespace)  # our own source: the field names the class declares
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _equality(values: Callable) -> Callable:
    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return __eq__


def _hash(values: Callable) -> Callable:
    def __hash__(self: object) -> int:
        return hash(values(self))

    return __hash__


def _representation(shown: tuple[str, ...]) -> Callable:
    def __repr__(self: object) -> str:
        pairs = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({pairs})"

    return __repr__


def _refuse_assignment(self: object, name: str, value: object) -> None:
    raise FrozenError(f"cannot assign to field {name!r}")


def _refuse_deletion(self: object, name: str) -> None:
    raise FrozenError(f"cannot delete field {name!r}")


def _state(names: tuple[str, ...]) -> Callable:
    def __getstate__(self: object) -> list:
        return [getattr(self, name) for name in names]

    return __getstate__


def _set_state(self: object, state: list) -> None:
    for f, value in zip(fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)


class _DataclassFields:
    """``__dataclass_fields__``, made by :mod:`dataclasses` on first use, so that its
    functions take a struct for a dataclass (code and tests beyond the hot path use them)."""

    def __get__(self, record: object, cls: type) -> dict:
        import dataclasses  # here: the commands that start fast never ask

        made = dataclasses.make_dataclass(
            cls.__name__,
            [(f.name, f.type, dataclasses.field(**_options(f))) for f in fields(cls)],
            frozen=True,
        )
        found = made.__dataclass_fields__
        type.__setattr__(cls, "__dataclass_fields__", found)
        return found


def _options(f: Field) -> dict:
    options = {"compare": f.compare, "repr": f.repr}
    if f.default is not MISSING:
        options["default"] = f.default
    if f.default_factory is not MISSING:
        options["default_factory"] = f.default_factory
    return options
