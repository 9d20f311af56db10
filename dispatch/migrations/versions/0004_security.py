"""core_lease: one core per database (a second core refuses to start while the lease is held)

Revision ID: 0004_security
Revises: 0003
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import dispatch.models


revision = '0004_security'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_lease',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('acquired_at', dispatch.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('renewed_at', dispatch.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', dispatch.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('core_lease')
