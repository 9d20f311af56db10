"""penalty_notices: the 行政处罚告知书 served before a penalty decision

Revision ID: 0010_penalty_notice
Revises: 0009_user_identity
Create Date: 2026-12-03 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0010_penalty_notice'
down_revision = '0009_user_identity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'penalty_notices',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('penalty_id', sa.Integer(), sa.ForeignKey('penalty_decisions.id'), nullable=False, unique=True),
        sa.Column('hazard_id', sa.Integer(), sa.ForeignKey('hazards.id'), nullable=False),
        sa.Column('number', sa.String(length=80), nullable=False, unique=True),
        sa.Column('year', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('issued_by', sa.String(length=64), nullable=False),
        sa.Column('issued_by_name', sa.String(length=100), nullable=False),
        sa.Column('target', sa.String(length=16), nullable=False),
        sa.Column('person_name', sa.String(length=100), nullable=False),
        sa.Column('person_id', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('amount_yuan', sa.Integer(), nullable=False),
        sa.Column('facts', sa.Text(), nullable=False),
        sa.Column('clauses', sa.JSON(), nullable=False),
        sa.Column('hearing', sa.Boolean(), nullable=False),
        sa.Column('reply_by', sa.DateTime(timezone=True), nullable=False),
        sa.Column('statement', sa.String(length=16), nullable=False),
        sa.Column('statement_note', sa.Text(), nullable=False),
        sa.Column('statement_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('statement_by', sa.String(length=64), nullable=True),
    )
    op.create_index('ix_penalty_notices_hazard_id', 'penalty_notices', ['hazard_id'])


def downgrade() -> None:
    op.drop_index('ix_penalty_notices_hazard_id', table_name='penalty_notices')
    op.drop_table('penalty_notices')
