"""A virtual cluster on one machine: network namespaces, real daemons and test clients."""
