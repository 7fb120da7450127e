"""invoice account foreign key

Revision ID: 143a7c818c43
Revises: 8b8ef15fd251
Create Date: 2026-11-21 08:52:32.891695

Fixed after pg_migration_guard stopped op.create_foreign_key
(constraint-missing-not-valid): Alembic's create_foreign_key has no NOT VALID option,
so the constraint is added NOT VALID with op.execute (only new rows are checked, a
short lock), then validated in its own transaction (autocommit_block), under a SHARE
UPDATE EXCLUSIVE lock that blocks neither reads nor writes.

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '143a7c818c43'
down_revision: Union[str, Sequence[str], None] = '8b8ef15fd251'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.execute(
        "ALTER TABLE invoice ADD CONSTRAINT invoice_account_id_fkey "
        "FOREIGN KEY (account_id) REFERENCES account (id) NOT VALID"
    )
    with op.get_context().autocommit_block():
        op.execute("ALTER TABLE invoice VALIDATE CONSTRAINT invoice_account_id_fkey")


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_constraint("invoice_account_id_fkey", "invoice", type_="foreignkey")
