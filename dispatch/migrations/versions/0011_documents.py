"""责令立即改正通知书 (rectification_notices.kind, .basis), 复查意见书 (recheck_opinions), 案件移送书 (case_referrals)

Revision ID: 0011_documents
Revises: 0010_penalty_notice
Create Date: 2026-12-04 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011_documents'
down_revision = '0010_penalty_notice'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('rectification_notices', sa.Column('kind', sa.String(length=16), nullable=False,
                                                     server_default=sa.text("'deadline'")))
    op.add_column('rectification_notices', sa.Column('basis', sa.JSON(), nullable=False,
                                                     server_default=sa.text("'[]'")))
    op.create_table(
        'recheck_opinions',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('recheck_id', sa.Integer(), sa.ForeignKey('rechecks.id'), nullable=False, unique=True),
        sa.Column('hazard_id', sa.Integer(), sa.ForeignKey('hazards.id'), nullable=False),
        sa.Column('notice_id', sa.Integer(), sa.ForeignKey('rectification_notices.id'), nullable=False),
        sa.Column('number', sa.String(length=80), nullable=False, unique=True),
        sa.Column('year', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('issued_by', sa.String(length=64), nullable=False),
        sa.Column('issued_by_name', sa.String(length=100), nullable=False),
        sa.Column('notice_number', sa.String(length=80), nullable=False),
        sa.Column('notice_issued_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
        sa.Column('rectified', sa.Boolean(), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
    )
    op.create_index('ix_recheck_opinions_hazard_id', 'recheck_opinions', ['hazard_id'])
    op.create_table(
        'case_referrals',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('penalty_id', sa.Integer(), sa.ForeignKey('penalty_decisions.id'), nullable=False, unique=True),
        sa.Column('hazard_id', sa.Integer(), sa.ForeignKey('hazards.id'), nullable=False),
        sa.Column('number', sa.String(length=80), nullable=False, unique=True),
        sa.Column('year', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('receiving_authority', sa.String(length=100), nullable=False),
        sa.Column('target', sa.String(length=16), nullable=False),
        sa.Column('person_name', sa.String(length=100), nullable=False),
        sa.Column('person_id', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('amount_yuan', sa.Integer(), nullable=False),
        sa.Column('facts', sa.Text(), nullable=False),
        sa.Column('clauses', sa.JSON(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('evidence', sa.JSON(), nullable=False),
        sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('issued_by', sa.String(length=64), nullable=False),
        sa.Column('issued_by_name', sa.String(length=100), nullable=False),
        sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('approved_by', sa.String(length=64), nullable=True),
        sa.Column('approved_by_name', sa.String(length=100), nullable=False),
    )
    op.create_index('ix_case_referrals_hazard_id', 'case_referrals', ['hazard_id'])


def downgrade() -> None:
    op.drop_index('ix_case_referrals_hazard_id', table_name='case_referrals')
    op.drop_table('case_referrals')
    op.drop_index('ix_recheck_opinions_hazard_id', table_name='recheck_opinions')
    op.drop_table('recheck_opinions')
    with op.batch_alter_table('rectification_notices') as batch:
        batch.drop_column('basis')
        batch.drop_column('kind')
