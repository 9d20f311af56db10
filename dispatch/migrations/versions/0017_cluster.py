"""cluster: several cores on one PostgreSQL database

Record entries name their hash chain (existing ones: 'main'); chain_heads keeps each chain's signed head;
incidents.merge_target marks each unit's one incident new alarms merge into (unique per unit); outbox rows can be
claimed by the node delivering them; cluster_events carries committed events between cores (LISTEN/NOTIFY).

Revision ID: 0017_cluster
Revises: 0016_registry_search
Create Date: 2026-12-01 04:30:00
"""
import sqlalchemy as sa
from alembic import op

import dispatch.models

revision = '0017_cluster'
down_revision = '0016_registry_search'
branch_labels = None
depends_on = None

TARGET = "merge_target"


def upgrade() -> None:
    with op.batch_alter_table('records') as batch:
        batch.add_column(sa.Column('chain', sa.String(length=40), nullable=False, server_default='main'))
    op.create_index('ix_records_chain_id', 'records', ['chain', 'id'])
    op.create_table(
        'chain_heads',
        sa.Column('chain', sa.String(length=40), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('signature', sa.String(length=64), nullable=False),
        sa.Column('updated_at', dispatch.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('chain'),
    )
    op.create_table(
        'cluster_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('node', sa.String(length=40), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('created_at', dispatch.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_cluster_events_created_at', 'cluster_events', ['created_at'])
    with op.batch_alter_table('incidents') as batch:
        batch.add_column(sa.Column('merge_target', sa.Boolean(), nullable=True))
    # each unit's newest open incident is where its next alarm merges (what the core's index held)
    op.execute("UPDATE incidents SET merge_target = true WHERE id IN "
               "(SELECT max(id) FROM incidents WHERE status <> 'closed' GROUP BY unit_id)")
    op.create_index('uq_incidents_unit_merge_target', 'incidents', ['unit_id'], unique=True,
                    sqlite_where=sa.text(TARGET), postgresql_where=sa.text(TARGET))
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('claimed_by', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('claimed_until', dispatch.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('claimed_until')
        batch.drop_column('claimed_by')
    op.drop_index('uq_incidents_unit_merge_target', 'incidents')
    with op.batch_alter_table('incidents') as batch:
        batch.drop_column('merge_target')
    op.drop_index('ix_cluster_events_created_at', 'cluster_events')
    op.drop_table('cluster_events')
    op.drop_table('chain_heads')
    op.drop_index('ix_records_chain_id', 'records')
    with op.batch_alter_table('records') as batch:
        batch.drop_column('chain')
