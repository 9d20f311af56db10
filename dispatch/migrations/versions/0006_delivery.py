"""dispatches.channels: per-channel delivery state (an MQTT broker's PUBACK is "sent", not "delivered")

Existing dispatches get their channel list from their outbox rows. MQTT rows that were marked delivered when the
broker accepted them become "sent" (nothing confirmed the agency got them); the dispatches' own status and the
record are history and stay as they are.

Revision ID: 0006_delivery
Revises: 0005_intake
Create Date: 2026-11-24 10:00:00
"""
from typing import Any

import sqlalchemy as sa
from alembic import op

import dispatch.models

revision = '0006_delivery'
down_revision = '0005_intake'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN (SQLite supports it with a constant default): batch mode would rebuild the table, which
    # the outbox's foreign key forbids
    op.add_column('dispatches', sa.Column('channels', sa.JSON(), nullable=False, server_default=sa.text("'[]'")))

    bind = op.get_bind()
    outbox = sa.table('outbox', sa.column('id', sa.Integer), sa.column('dispatch_id', sa.Integer),
                      sa.column('channel', sa.String), sa.column('secret_ref', sa.String),
                      sa.column('status', sa.String), sa.column('attempts', sa.Integer),
                      sa.column('last_error', sa.String), sa.column('delivered_at', dispatch.models.UTCDateTime(timezone=True)))
    dispatches = sa.table('dispatches', sa.column('id', sa.Integer), sa.column('channels', sa.JSON))
    rows = bind.execute(sa.select(outbox.c.dispatch_id, outbox.c.channel, outbox.c.secret_ref, outbox.c.status,
                                  outbox.c.attempts, outbox.c.last_error, outbox.c.delivered_at)
                        .where(outbox.c.dispatch_id.is_not(None)).order_by(outbox.c.id)).all()
    by_dispatch: dict[int, list[dict[str, Any]]] = {}
    for dispatch_id, channel, ref, status, attempts, last_error, delivered_at in rows:
        key = 'mqtt' if channel == 'mqtt' else f"webhook-{(ref or '').rsplit('.', 1)[-1]}"
        if status == 'delivered':
            status = 'sent' if channel == 'mqtt' else 'delivered'
        at = None if delivered_at is None else delivered_at.isoformat()
        by_dispatch.setdefault(dispatch_id, []).append(
            {"key": key, "channel": channel, "status": status, "at": at if status != 'pending' else None,
             "attempts": attempts or 0, "last_error": (last_error or "")[:200]})
    for dispatch_id, channels in by_dispatch.items():
        bind.execute(dispatches.update().where(dispatches.c.id == dispatch_id).values(channels=channels))
    bind.execute(outbox.update().where(outbox.c.channel == 'mqtt', outbox.c.status == 'delivered',
                                       outbox.c.dispatch_id.is_not(None)).values(status='sent'))


def downgrade() -> None:
    op.drop_column('dispatches', 'channels')  # SQLite ≥ 3.35 drops a column in place
