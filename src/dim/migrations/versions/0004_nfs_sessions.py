"""The NFS sessions each image server's ``dim serve`` reads on its own machine, so that
``dim node status`` run anywhere sees the nodes of every server (:mod:`dim.boot.serve`)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nfs_samples",
        sa.Column("server", sa.String(), primary_key=True),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_table(
        "nfs_sessions",
        sa.Column("server", sa.String(), primary_key=True),
        sa.Column("client", sa.String(), primary_key=True),
        sa.Column("address", sa.String(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("nfs_sessions")
    op.drop_table("nfs_samples")
