"""penalty_decisions.person_id: the identity document number of a penalised individual (身份证号)

Revision ID: 0008_penalty_person
Revises: 0007_channel_key
Create Date: 2026-12-03 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008_penalty_person'
down_revision = '0007_channel_key'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('penalty_decisions', sa.Column('person_id', sa.String(length=32), nullable=False,
                                                 server_default=sa.text("''")))


def downgrade() -> None:
    with op.batch_alter_table('penalty_decisions') as batch:
        batch.drop_column('person_id')
