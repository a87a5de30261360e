"""Baseline: the state DB of the releases before migrations.

Applied to a DB without ``alembic_version``, it creates only the tables that are missing: a DB
made by an earlier dim keeps its rows and gets the tables its release lacked (``stale_leases``
and ``boots`` came after the first three). The definitions are written out here, not taken
from :mod:`dim.state`: a revision is history and never changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "interface_macs" not in present:
        op.create_table(
            "interface_macs",
            sa.Column("node", sa.String(), primary_key=True),
            sa.Column("network", sa.String(), primary_key=True),
            sa.Column("mac", sa.String(), nullable=False, unique=True),
        )
    if "node_images" not in present:
        op.create_table(
            "node_images",
            sa.Column("node", sa.String(), primary_key=True),
            sa.Column("image", sa.String(), nullable=False),
        )
    if "stale_leases" not in present:
        op.create_table(
            "stale_leases",
            sa.Column("node", sa.String(), primary_key=True),
            sa.Column("network", sa.String(), primary_key=True),
            sa.Column("mac", sa.String(), primary_key=True),
            sa.Column("at", sa.Float(), nullable=False),
        )
    if "events" not in present:
        op.create_table(
            "events",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("at", sa.Float(), nullable=False),
            sa.Column("node", sa.String(), nullable=True),
            sa.Column("kind", sa.String(), nullable=False),
            sa.Column("detail", sa.String(), nullable=False),
        )
        op.create_index("ix_events_node", "events", ["node"])
    if "boots" not in present:
        op.create_table(
            "boots",
            sa.Column("node", sa.String(), primary_key=True),
            sa.Column("at", sa.Float(), nullable=False),
            sa.Column("image", sa.String(), nullable=False),
            sa.Column("version", sa.String(), nullable=False),
            sa.Column("client", sa.String(), nullable=False),
        )


def downgrade() -> None:
    for table in ("boots", "events", "stale_leases", "node_images", "interface_macs"):
        op.drop_table(table)
