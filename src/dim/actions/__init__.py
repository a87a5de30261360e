"""Use cases across the domain packages, one function each, returning result objects.

The CLI, the lab and (later) a REST API call these; they never call each other. Nothing here
prints, asks or imports click: a function takes a :class:`~dim.actions.context.Context` and
plain values, raises a :class:`dim.errors.DimError` when it cannot do its work, and returns a
frozen dataclass that says what it did::

    ctx = Context(config=Path("cluster.xml"), state=Path("state"))
    report = apply.apply(ctx, root=Path("/tmp/root"), do_reload=False)
    report.raise_for_unreleased()   # after showing the report: the errors worth a status

:mod:`context` (what every use case needs), :mod:`apply` (render, validate, install, settle
leases), :mod:`nodes` (MACs, image assignment, switch, reset, diff), :mod:`images` (the image
store's commands and boot builds), :mod:`power` (remote control of a node set).
"""
