"""index invoice issued_at

Revision ID: 8b8ef15fd251
Revises: 446c9f304a57
Create Date: 2026-11-21 08:52:31.449886

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
    op.create_index("ix_invoice_issued_at", "invoice", ["issued_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_invoice_issued_at", table_name="invoice")
