"""invoice account foreign key

Revision ID: 143a7c818c43
Revises: 8b8ef15fd251
Create Date: 2026-11-21 08:52:32.891695

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
    op.create_foreign_key(
        "invoice_account_id_fkey", "invoice", "account", ["account_id"], ["id"]
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_constraint("invoice_account_id_fkey", "invoice", type_="foreignkey")
