"""The state DB's schema migrations (Alembic), shipped inside dim and run when a DB is opened.

:data:`HEAD` names the newest revision in ``versions/``. :meth:`dim.state.StateDB.open` reads
the DB's revision (Alembic's ``alembic_version`` table) in one query and calls :func:`upgrade`
only when it differs: importing Alembic costs a tenth of a second, which a command on an
up-to-date DB never pays. :func:`upgrade` runs inside the caller's transaction, which holds
the state DB's write lock, so two commands never migrate at once.

Revision ``0001`` is the schema of the releases before migrations. Applied to a DB that has
no ``alembic_version`` it creates only the tables that are missing, so that a DB made by any
earlier dim (some lack ``stale_leases`` and ``boots``) comes out complete; a new DB gets
them all.

To change a table: change it in :mod:`dim.state`, write the next revision in ``versions/``
(``revision``, ``down_revision``, ``upgrade()`` with Alembic's ``op``; copy 0001's form) and
set :data:`HEAD` to it; on SQLite, change a table through ``op.batch_alter_table`` (SQLite's
ALTER TABLE cannot do most changes in place). tests/unit/test_migrations.py fails until the
migrations build what :mod:`dim.state` declares on both backends, and prints the difference
Alembic finds::

    with engine.begin() as conn:
        upgrade(conn)          # conn's DB is now at HEAD
"""

from __future__ import annotations

from pathlib import Path

from dim.errors import StateError

TYPE_CHECKING = False  # typing's own: dim.records reads HEAD at every start, typing costs 15 M
if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config

HEAD = "0004"
FOLDER = Path(__file__).resolve().parent


def config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for these migrations, without an alembic.ini: the scripts are
    this package's, the connection the caller's (env.py runs on it)."""
    from alembic.config import Config

    settings = Config()
    settings.set_main_option("script_location", str(FOLDER))
    settings.attributes["connection"] = connection
    return settings


def upgrade(connection: sa.Connection) -> None:
    """Bring the DB of ``connection``, in a transaction the caller commits, to :data:`HEAD`.

    A DB at a revision these migrations do not know (a newer dim's) is refused, unchanged.
    """
    from alembic import command
    from alembic.util import CommandError

    try:
        command.upgrade(config(connection), "head")
    except CommandError as exc:
        raise StateError(
            f"cannot upgrade the state DB: {exc}",
            hint="a newer dim has upgraded it: run that dim here too",
        ) from None
