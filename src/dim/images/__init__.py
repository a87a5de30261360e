"""File-system images: store, versions, deltas, sources and node replicas.

::

    <state>/images/<image>/live/            the tree nodes mount read-only as their root: the
                                            latest version's whole tree, changed only by
                                            atomic renames of whole files
    <state>/images/<image>/live.version     which version live matches (written last)
    <state>/images/<image>/versions/<N>/    what version N wrote (files: the inodes live got);
                                            the first version (or one an older dim made) whole
    <state>/images/<image>/meta/<N>.json    when and from what version N was made, its delta
    <state>/images/<image>/meta/<N>.changes the paths N wrote and removed (absent: whole)
    <state>/images/<image>/.staging-<pid>/  a new tree being filled by a source (never listed)
    <state>/nodes/<node>/<image>/           the node's persistent paths: real copies
    <state>/nodes/<node>/<image>.version    the version that replica was last brought to

Every source (a directory, a tarball, a master node over ssh, ``image exec``) fills a staging
folder with what differs from live and lists what it removes (the first version: the whole
tree); :meth:`dim.images.commit.ImageChange.commit` turns it into the next version, updates
live and replicates the persistent part of the change into every node replica: each step
costs what changed, not what the image holds.

The modules, each importing only those above it in this list (:class:`dim.paths.StatePaths`
says where everything lies):

- :mod:`~dim.images.tree` (scanning a tree), :mod:`~dim.images.delta` (comparing two),
  :mod:`~dim.images.crash` (the crash tests' stopping points);
- :mod:`~dim.images.store`: what versions, live trees and replicas exist; the image lock;
- :mod:`~dim.images.links`: applying a delta to live as hard links into a version;
- :mod:`~dim.images.history`: any version's tree, read from the versions' change lists;
- :mod:`~dim.images.fold`: removing versions (gc) by folding them into the next one kept;
- :mod:`~dim.images.replicas`: each node's real copy of the persistent paths;
- :mod:`~dim.images.commit`: a change under the lock, its crash-safe order, and recovery;
- :mod:`~dim.images.sources`: what fills a staging folder (rsync, tar, ssh, exec);
- :mod:`~dim.images.operations`: one function per ``dim image`` command.
"""
