"""registry_search: the unit registry's search and history indexes

A record entry may name the unit it is about (records.unit_id, indexed: a unit's history is one index range); a
non-empty unified social credit code is unique; units are listed by name and filtered by type.

Revision ID: 0016_registry_search
Revises: 0015_inspections
Create Date: 2026-12-06 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0016_registry_search'
down_revision = '0015_inspections'
branch_labels = None
depends_on = None

FILLED = "credit_code <> ''"


def upgrade() -> None:
    op.add_column('records', sa.Column('unit_id', sa.String(length=64), nullable=True))
    op.create_index('ix_records_unit_id', 'records', ['unit_id'])
    op.create_index('uq_units_credit_code', 'units', ['credit_code'], unique=True,
                    sqlite_where=sa.text(FILLED), postgresql_where=sa.text(FILLED))
    op.create_index('ix_units_name', 'units', ['name'])
    op.create_index('ix_units_unit_type', 'units', ['unit_type'])


def downgrade() -> None:
    op.drop_index('ix_units_unit_type', 'units')
    op.drop_index('ix_units_name', 'units')
    op.drop_index('uq_units_credit_code', 'units')
    op.drop_index('ix_records_unit_id', 'records')
    with op.batch_alter_table('records') as batch:
        batch.drop_column('unit_id')
