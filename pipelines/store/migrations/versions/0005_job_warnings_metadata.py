"""job warnings and metadata

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:00:00.000000

``warnings``: what the stages could not do as asked and made do without (``[{code, message,
stage}]``, never NULL). ``meta``: the request's ``metadata``, any JSON the client keeps beside its job.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('warnings', sa.JSON(), server_default=sa.text("'[]'"), nullable=False))
        batch_op.add_column(sa.Column('meta', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('meta')
        batch_op.drop_column('warnings')
