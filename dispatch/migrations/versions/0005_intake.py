"""intake_attempts: redelivered MQTT messages counted before each try (poison quarantine across restarts)

Revision ID: 0005_intake
Revises: 0004_security
Create Date: 2026-11-30 14:30:00
"""
from alembic import op
import sqlalchemy as sa
import dispatch.models


revision = '0005_intake'
down_revision = '0004_security'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('intake_attempts',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('tries', sa.Integer(), nullable=False),
    sa.Column('tries_alone', sa.Integer(), nullable=False),
    sa.Column('updated_at', dispatch.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('intake_attempts')
