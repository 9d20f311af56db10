"""inspections: typed inspections (消防监督检查) with their items, photos and rechecks; hazards carry the clauses a
failed item checked and the inspection that found them

Revision ID: 0015_inspections
Revises: 0014_complaints
Create Date: 2026-12-06 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_inspections'
down_revision = '0014_complaints'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'inspections',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('idempotency_key', sa.String(length=64), nullable=False),
        sa.Column('number', sa.String(length=80), nullable=False),
        sa.Column('year', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('unit_id', sa.String(length=64), sa.ForeignKey('units.id'), nullable=False),
        sa.Column('station_id', sa.String(length=64), nullable=True),
        sa.Column('unit_snapshot', sa.JSON(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('unit_type', sa.String(length=40), nullable=False),
        sa.Column('checklist_version', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('lat', sa.Float(), nullable=True),
        sa.Column('lon', sa.Float(), nullable=True),
        sa.Column('officer', sa.String(length=64), nullable=False),
        sa.Column('officer_name', sa.String(length=100), nullable=False),
        sa.Column('co_officers', sa.JSON(), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('signer_name', sa.String(length=100), nullable=False),
        sa.Column('signature_png', sa.LargeBinary(), nullable=False),
        sa.Column('signature_sha256', sa.String(length=64), nullable=False),
        sa.Column('results_sha256', sa.String(length=64), nullable=False),
        sa.UniqueConstraint('idempotency_key', name='uq_inspections_idempotency_key'),
        sa.UniqueConstraint('number', name='uq_inspections_number'),
    )
    op.create_index('ix_inspections_unit_id', 'inspections', ['unit_id'])
    op.create_index('ix_inspections_station_id', 'inspections', ['station_id'])
    op.create_table(
        'inspection_items',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('inspection_id', sa.Integer(), sa.ForeignKey('inspections.id'), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('item_id', sa.String(length=64), nullable=False),
        sa.Column('text', sa.String(length=200), nullable=False),
        sa.Column('clause_key', sa.String(length=40), nullable=False),
        sa.Column('clause', sa.JSON(), nullable=False),
        sa.Column('category', sa.String(length=40), nullable=False),
        sa.Column('result', sa.String(length=8), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('hazard_id', sa.Integer(), sa.ForeignKey('hazards.id'), nullable=True),
    )
    op.create_index('ix_inspection_items_inspection_id', 'inspection_items', ['inspection_id'])
    op.create_table(
        'inspection_photos',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('unit_id', sa.String(length=64), sa.ForeignKey('units.id'), nullable=False),
        sa.Column('inspection_id', sa.Integer(), sa.ForeignKey('inspections.id'), nullable=True),
        sa.Column('item_id', sa.String(length=64), nullable=True),
        sa.Column('content_type', sa.String(length=40), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('width', sa.Integer(), nullable=False),
        sa.Column('height', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('taken_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('lat', sa.Float(), nullable=True),
        sa.Column('lon', sa.Float(), nullable=True),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('uploaded_by', sa.String(length=64), nullable=False),
        sa.UniqueConstraint('uploaded_by', 'client_id', name='uq_inspection_photos_client'),
    )
    op.create_index('ix_inspection_photos_unit_id', 'inspection_photos', ['unit_id'])
    op.create_index('ix_inspection_photos_inspection_id', 'inspection_photos', ['inspection_id'])
    op.create_table(
        'inspection_rechecks',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('inspection_id', sa.Integer(), sa.ForeignKey('inspections.id'), nullable=False),
        sa.Column('hazard_id', sa.Integer(), sa.ForeignKey('hazards.id'), nullable=False),
        sa.Column('rectified', sa.Boolean(), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('recheck_id', sa.Integer(), sa.ForeignKey('rechecks.id'), nullable=False),
    )
    op.create_index('ix_inspection_rechecks_inspection_id', 'inspection_rechecks', ['inspection_id'])
    op.create_index('ix_inspection_rechecks_hazard_id', 'inspection_rechecks', ['hazard_id'])
    # plain ADD COLUMNs: SQLite's batch mode would rebuild `hazards`, which other tables' foreign keys name
    op.add_column('hazards', sa.Column('clauses', sa.JSON(), nullable=False, server_default='[]'))
    op.add_column('hazards', sa.Column('inspection_id', sa.Integer(), nullable=True))
    op.create_index('ix_hazards_inspection_id', 'hazards', ['inspection_id'])


def downgrade() -> None:
    op.drop_index('ix_hazards_inspection_id', 'hazards')
    with op.batch_alter_table('hazards') as batch:
        batch.drop_column('inspection_id')
        batch.drop_column('clauses')
    op.drop_table('inspection_rechecks')
    op.drop_table('inspection_photos')
    op.drop_table('inspection_items')
    op.drop_table('inspections')
