"""users.real_name and users.badge (姓名, 警号); the printed names of the officers on notices and decisions

Revision ID: 0009_user_identity
Revises: 0008_penalty_person
Create Date: 2026-12-03 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009_user_identity'
down_revision = '0008_penalty_person'
branch_labels = None
depends_on = None

COLUMNS = {
    'users': [('real_name', 64), ('badge', 16)],
    'rectification_notices': [('issued_by_name', 100)],
    'penalty_decisions': [('confirmed_by_name', 100), ('approved_by_name', 100)],
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        for name, length in columns:
            op.add_column(table, sa.Column(name, sa.String(length=length), nullable=False,
                                           server_default=sa.text("''")))


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name, _ in columns:
                batch.drop_column(name)
