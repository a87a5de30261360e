"""Network-boot images: the kernel of an image and an initramfs that mounts its live tree.

::

    <state>/boot/<image>/<version>/vmlinuz      the kernel from the version's /boot
    <state>/boot/<image>/<version>/initrd.img   busybox, the image's own modules, /init
    <state>/boot/<image>/<version>/build.json   inputs and their digests, outputs

- :mod:`dim.boot.modules` reads an image's ``modules.dep`` and resolves the modules a network
  boot needs (NIC drivers, NFS, af_packet…) in load order;
- :mod:`dim.boot.initramfs` writes a deterministic newc cpio, gzip-compressed;
- :mod:`dim.boot.builds` is the model of a build: its folder, whether it is complete and
  intact, which build of an image is the current one;
- :mod:`dim.boot.build` puts them together per image version, reusing a build whose inputs did
  not change (``dim boot build``); :mod:`dim.boot.serve` serves them (``dim serve``), within
  the timeouts and limits of :mod:`dim.boot.connections`, by :mod:`dim.boot.sendfile`, and
  answers from :mod:`dim.boot.targets` (written by ``dim apply``) while the state DB is down;
- ``init.sh`` and ``udhcpc.sh`` are the initramfs's ``/init`` and DHCP script, package data;
  :mod:`dim.boot.arguments` lists the ``dim.*`` kernel arguments that ``/init`` reads.
"""
