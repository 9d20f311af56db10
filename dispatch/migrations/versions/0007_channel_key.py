"""outbox.channel_key: the key of the row's channel on its dispatch, stored when the row is written

Before, the key was worked out again from the row's config path ('agencies.fire.webhooks.0' → 'webhook-0'). Rows
written before this revision get theirs here, the same way, once.

Revision ID: 0007_channel_key
Revises: 0006_delivery
Create Date: 2026-12-02 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007_channel_key'
down_revision = '0006_delivery'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN with a constant default (batch mode would rebuild the table: the foreign key forbids it)
    op.add_column('outbox', sa.Column('channel_key', sa.String(length=32), nullable=False,
                                      server_default=sa.text("''")))
    bind = op.get_bind()
    outbox = sa.table('outbox', sa.column('id', sa.Integer), sa.column('channel', sa.String),
                      sa.column('secret_ref', sa.String), sa.column('channel_key', sa.String))
    bind.execute(outbox.update().where(outbox.c.channel == 'mqtt').values(channel_key='mqtt'))
    refs = bind.execute(sa.select(outbox.c.secret_ref).where(outbox.c.channel == 'webhook').distinct()).scalars()
    for ref in list(refs):
        key = f"webhook-{(ref or '').rsplit('.', 1)[-1]}"
        bind.execute(outbox.update().where(outbox.c.channel == 'webhook', outbox.c.secret_ref == ref)
                     .values(channel_key=key))


def downgrade() -> None:
    op.drop_column('outbox', 'channel_key')  # SQLite ≥ 3.35 drops a column in place
