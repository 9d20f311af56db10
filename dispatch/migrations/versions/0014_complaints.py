"""complaints: public reports, 96119 hotline complaints and assistants' reports in a station's triage queue

Revision ID: 0014_complaints
Revises: 0013_registry
Create Date: 2026-12-06 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0014_complaints'
down_revision = '0013_registry'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'complaints',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('receipt', sa.String(length=16), nullable=False, unique=True),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('lat', sa.Float(), nullable=True),
        sa.Column('lon', sa.Float(), nullable=True),
        sa.Column('address', sa.String(length=400), nullable=False),
        sa.Column('unit_id', sa.String(length=64), sa.ForeignKey('units.id'), nullable=True),
        sa.Column('facility', sa.String(length=64), nullable=False),
        sa.Column('contact_phone', sa.String(length=40), nullable=False),
        sa.Column('station_id', sa.String(length=64), sa.ForeignKey('organisations.id'), nullable=False),
        sa.Column('routed_by', sa.String(length=16), nullable=False),
        sa.Column('reporter', sa.String(length=64), nullable=False),
        sa.Column('ticket', sa.String(length=64), nullable=True, unique=True),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('triaged_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('triaged_by', sa.String(length=64), nullable=True),
        sa.Column('reject_reason', sa.Text(), nullable=False),
        sa.Column('hazard_id', sa.Integer(), sa.ForeignKey('hazards.id'), nullable=True),
    )
    op.create_index('ix_complaints_station_status', 'complaints', ['station_id', 'status'])
    op.create_index('ix_complaints_reporter', 'complaints', ['reporter'])
    op.create_table(
        'complaint_photos',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('complaint_id', sa.Integer(), sa.ForeignKey('complaints.id'), nullable=False, unique=True),
        sa.Column('content_type', sa.String(length=40), nullable=False),
        sa.Column('width', sa.Integer(), nullable=False),
        sa.Column('height', sa.Integer(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('complaint_photos')
    op.drop_index('ix_complaints_reporter', 'complaints')
    op.drop_index('ix_complaints_station_status', 'complaints')
    op.drop_table('complaints')
