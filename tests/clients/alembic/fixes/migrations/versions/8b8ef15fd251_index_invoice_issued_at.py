"""index invoice issued_at

Revision ID: 8b8ef15fd251
Revises: 446c9f304a57
Create Date: 2026-11-21 08:52:31.449886

Fixed after pg_migration_guard stopped the plain op.create_index
(require-concurrent-index-creation): build the index CONCURRENTLY, which cannot run
inside a transaction block, so it runs in Alembic's autocommit_block().

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '8b8ef15fd251'
down_revision: Union[str, Sequence[str], None] = '446c9f304a57'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_invoice_issued_at",
            "invoice",
            ["issued_at"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_invoice_issued_at",
            table_name="invoice",
            postgresql_concurrently=True,
            if_exists=True,
        )
