"""Test doubles: what stands in for the outside world in dim's tests and benchmarks.

- `dhcp`: boot firmware's DHCP client (busybox udhcpc sending what PXE ROMs and iPXE send),
  and the way integration tests run the real DHCP servers on a `dim.lab.netns.Segment`;
- `redfish_fleet`: thousands of Redfish BMCs in one process (``python -m
  tests.doubles.redfish_fleet``, from the checkout), for bench/power.py and the power tests.

They are not part of the product: `dim lab` never imports them.
"""
