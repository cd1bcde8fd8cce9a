"""users.token_generation: grants and file links are bound to the token they were made under;
files.media: an upload's probed duration and size, for the media caps at job submission

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 15:40:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_generation', sa.Integer(), server_default=sa.text('1'),
                                      nullable=False))
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('media', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_column('media')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('token_generation')
