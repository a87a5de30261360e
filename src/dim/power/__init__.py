"""Node remote control: power and boot device over IPMI, Redfish and SNMP, for many nodes at once.

::

    targets = power.targets(inventory.cluster, nodes, credentials)   # node -> BMC + credentials
    results = fanout.execute(targets, fanout.status, FanoutOptions(timeout=2.0))

:mod:`interface` (the driver protocol and results), :mod:`credentials` (the 0600 file),
:mod:`fanout` (bounded concurrency, a time budget per node, retries), and one module per
protocol: :mod:`ipmi` (pyghmi), :mod:`redfish` (aiohttp), :mod:`snmp` (pysnmp).
"""
