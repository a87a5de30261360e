"""Node remote control: power and boot device over IPMI, Redfish and SNMP, for many nodes at once.

::

    store = credentials.load(credentials.resolve_path(None))        # the 0600 file
    results = control.run(nodes, store, fanout.status, FanoutOptions(timeout=2.0))

:mod:`interface` (the driver protocol and per-node results), :mod:`credentials` (the file),
:mod:`fanout` (bounded concurrency, a time budget per node, retries, worker processes),
:mod:`control` (layout nodes to BMC targets), and one module per protocol: :mod:`ipmi`
(pyghmi), :mod:`redfish` (aiohttp), :mod:`snmp` (pysnmp, profiles in snmp_profiles.toml).
"""
