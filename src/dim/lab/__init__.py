"""A virtual cluster on one machine: a network namespace, the real daemons, QEMU nodes.

One module per concern; imports go down this list, never up. The lab configures and changes
dim through the same use cases as the ``dim`` command (`dim.actions`)::

    cluster     the lifecycle: up, boot, watch, run, status, restart, reload, down
    bmcs        simulated IPMI BMCs for the nodes (each a `bmcsim` process)
    daemons     the daemons as declared `DaemonSpec`s; start them, restart one
    console     a node's serial console: its log, boot stages, commands typed in
    images      the tiny and Debian images the lab boots
    state       lab.json: what runs, by process id
    qemu        a node's QEMU command line, firmware and MAC
    network     the lab's named namespace, its bridge and taps
    processes   started detached in the namespace, stopped by process id
    netns       namespaces, bridges and daemons in them; the tests' `Segment`

Test doubles (firmware's DHCP client, a Redfish fleet) are in tests/doubles, not here.
"""
