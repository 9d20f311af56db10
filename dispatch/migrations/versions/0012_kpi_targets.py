"""kpi_targets: per-month volume targets of officers and the station (set by an admin, recorded)

Revision ID: 0012_kpi_targets
Revises: 0011_documents
Create Date: 2026-12-04 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0012_kpi_targets'
down_revision = '0011_documents'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'kpi_targets',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('month', sa.String(length=7), nullable=False),
        sa.Column('scope', sa.String(length=16), nullable=False),
        sa.Column('officer', sa.String(length=64), nullable=False),
        sa.Column('metric', sa.String(length=32), nullable=False),
        sa.Column('target', sa.Integer(), nullable=False),
        sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('set_by', sa.String(length=64), nullable=False),
        sa.UniqueConstraint('month', 'scope', 'officer', 'metric', name='uq_kpi_targets_subject'),
    )


def downgrade() -> None:
    op.drop_table('kpi_targets')
