"""registry: the command tree (organisations) and the unit registry's fields; users belong to an organisation

Revision ID: 0013_registry
Revises: 0012_kpi_targets
Create Date: 2026-12-05 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013_registry'
down_revision = '0012_kpi_targets'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'organisations',
        sa.Column('id', sa.String(length=64), primary_key=True),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('level', sa.String(length=16), nullable=False),
        sa.Column('parent_id', sa.String(length=64), sa.ForeignKey('organisations.id'), nullable=True),
    )
    op.add_column('units', sa.Column('unit_type', sa.String(length=40), nullable=False, server_default='other'))
    op.add_column('units', sa.Column('station_id', sa.String(length=64), nullable=True))
    op.add_column('units', sa.Column('credit_code', sa.String(length=18), nullable=False, server_default=''))
    op.add_column('units', sa.Column('safety_manager_name', sa.String(length=100), nullable=False, server_default=''))
    op.add_column('units', sa.Column('safety_manager_phone', sa.String(length=40), nullable=False, server_default=''))
    op.add_column('units', sa.Column('floors', sa.Integer(), nullable=True))
    op.add_column('units', sa.Column('area_m2', sa.Float(), nullable=True))
    op.add_column('units', sa.Column('occupancy', sa.Integer(), nullable=True))
    op.add_column('units', sa.Column('facilities', sa.JSON(), nullable=False, server_default='[]'))
    op.add_column('units', sa.Column('community_officer', sa.String(length=64), nullable=False, server_default=''))
    op.add_column('units', sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('units', sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
    # plain ADD COLUMNs: SQLite's batch mode would rebuild `units`, which the incidents' foreign keys forbid
    if op.get_bind().dialect.name != 'sqlite':
        op.create_foreign_key('fk_units_station', 'units', 'organisations', ['station_id'], ['id'])
    op.create_index('ix_units_station_id', 'units', ['station_id'])
    op.add_column('users', sa.Column('org_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_index('ix_units_station_id', 'units')
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint('fk_units_station', 'units', type_='foreignkey')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('org_id')
    with op.batch_alter_table('units') as batch:
        for col in ('version', 'retired_at', 'community_officer', 'facilities', 'occupancy', 'area_m2', 'floors',
                    'safety_manager_phone', 'safety_manager_name', 'credit_code', 'station_id', 'unit_type'):
            batch.drop_column(col)
    op.drop_table('organisations')
