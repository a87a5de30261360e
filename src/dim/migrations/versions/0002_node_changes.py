"""The change journal: one row per node whose MAC or image a command changed.

``dim apply`` reads the rows after the last one it consumed, instead of every MAC and image
of the state DB, to know which nodes to render again (:mod:`dim.services.applied`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("node", sa.String(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("node_changes")
