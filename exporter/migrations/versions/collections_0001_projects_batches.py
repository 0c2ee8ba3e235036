"""collections: collection_projects, collection_batches, collection_source_files, collection_files, collection_decisions, collection_emails

Revision ID: collections_0001
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import exporter.db

revision = 'collections_0001'
down_revision = '0001'
branch_labels = ('collections',)
depends_on = None


def upgrade() -> None:
    op.create_table('collection_projects',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('owner_name', sa.String(length=200), nullable=True),
    sa.Column('owner_email', sa.String(length=320), nullable=False),
    sa.Column('callback_url', sa.String(length=2048), nullable=True),
    sa.Column('zooniverse_project_id', sa.String(length=32), nullable=True),
    sa.Column('subject_set_id', sa.String(length=32), nullable=True),
    sa.Column('source', sa.String(length=1024), nullable=False),
    sa.Column('grant_hash', sa.String(length=64), nullable=True),
    sa.Column('grant_prefix', sa.String(length=16), nullable=True),
    sa.Column('grant_scope', sa.String(length=1024), nullable=True),
    sa.Column('grant_revoked_at', exporter.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('data_rights_approved', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('poll_lease_until', exporter.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_polled_at', exporter.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_poll_error', sa.Text(), nullable=True),
    sa.Column('last_poll_found', sa.Integer(), nullable=False),
    sa.Column('created_at', exporter.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', exporter.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_projects')),
    sa.UniqueConstraint('name', name=op.f('uq_collection_projects_name'))
    )
    with op.batch_alter_table('collection_projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_projects_grant_hash'), ['grant_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_projects_status'), ['status'], unique=False)

    op.create_table('collection_batches',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=True),
    sa.Column('publish_job_id', sa.String(length=36), nullable=True),
    sa.Column('import_job_id', sa.String(length=36), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('files_total', sa.Integer(), nullable=False),
    sa.Column('retrieved', sa.Integer(), nullable=False),
    sa.Column('converted', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Integer(), nullable=False),
    sa.Column('waiting', sa.Integer(), nullable=False),
    sa.Column('cap', sa.Integer(), nullable=False),
    sa.Column('approval_expires_at', exporter.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('manifest_key', sa.String(length=1024), nullable=True),
    sa.Column('manifest_url', sa.String(length=2048), nullable=True),
    sa.Column('import_state', sa.String(length=16), nullable=True),
    sa.Column('import_id', sa.String(length=32), nullable=True),
    sa.Column('manifest_count', sa.Integer(), nullable=True),
    sa.Column('imported_count', sa.Integer(), nullable=True),
    sa.Column('failed_count', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('originals_deleted_at', exporter.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('converted_deleted_at', exporter.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', exporter.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', exporter.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['collection_projects.id'], name=op.f('fk_collection_batches_project_id_collection_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_batches'))
    )
    with op.batch_alter_table('collection_batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_batches_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_batches_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_batches_state'), ['state'], unique=False)

    op.create_table('collection_decisions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('by', sa.String(length=250), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('at', exporter.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['collection_batches.id'], name=op.f('fk_collection_decisions_batch_id_collection_batches'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['collection_projects.id'], name=op.f('fk_collection_decisions_project_id_collection_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_decisions'))
    )
    with op.batch_alter_table('collection_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_decisions_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_decisions_project_id'), ['project_id'], unique=False)

    op.create_table('collection_emails',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('job_id', sa.String(length=36), nullable=True),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('subject', sa.String(length=250), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', exporter.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', exporter.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', exporter.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['collection_batches.id'], name=op.f('fk_collection_emails_batch_id_collection_batches'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['collection_projects.id'], name=op.f('fk_collection_emails_project_id_collection_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_emails')),
    sa.UniqueConstraint('project_id', 'batch_id', 'event', 'job_id', name=op.f('uq_collection_emails_project_id'))
    )
    with op.batch_alter_table('collection_emails', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_emails_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_emails_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_emails_state'), ['state'], unique=False)

    op.create_table('collection_source_files',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=1024), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('seen_at', exporter.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['collection_batches.id'], name=op.f('fk_collection_source_files_batch_id_collection_batches'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['collection_projects.id'], name=op.f('fk_collection_source_files_project_id_collection_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_source_files')),
    sa.UniqueConstraint('project_id', 'name', 'signature', name=op.f('uq_collection_source_files_project_id'))
    )
    with op.batch_alter_table('collection_source_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_source_files_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_source_files_project_id'), ['project_id'], unique=False)

    op.create_table('collection_files',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('source_file_id', sa.Integer(), nullable=False),
    sa.Column('source_name', sa.String(length=1024), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('quarantine_key', sa.String(length=1024), nullable=True),
    sa.Column('converted_key', sa.String(length=1024), nullable=True),
    sa.Column('converted_size', sa.BigInteger(), nullable=True),
    sa.Column('content_type', sa.String(length=64), nullable=True),
    sa.Column('extension', sa.String(length=8), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('refused_reason', sa.Text(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('object_id', sa.String(length=255), nullable=True),
    sa.Column('external_id', sa.String(length=64), nullable=True),
    sa.Column('public_key', sa.String(length=1024), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['collection_batches.id'], name=op.f('fk_collection_files_batch_id_collection_batches'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_file_id'], ['collection_source_files.id'], name=op.f('fk_collection_files_source_file_id_collection_source_files'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_files')),
    sa.UniqueConstraint('batch_id', 'source_file_id', name=op.f('uq_collection_files_batch_id'))
    )
    with op.batch_alter_table('collection_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_files_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_files_object_id'), ['object_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_files_sha256'), ['sha256'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('collection_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collection_files_sha256'))
        batch_op.drop_index(batch_op.f('ix_collection_files_object_id'))
        batch_op.drop_index(batch_op.f('ix_collection_files_batch_id'))

    op.drop_table('collection_files')
    with op.batch_alter_table('collection_source_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collection_source_files_project_id'))
        batch_op.drop_index(batch_op.f('ix_collection_source_files_batch_id'))

    op.drop_table('collection_source_files')
    with op.batch_alter_table('collection_emails', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collection_emails_state'))
        batch_op.drop_index(batch_op.f('ix_collection_emails_project_id'))
        batch_op.drop_index(batch_op.f('ix_collection_emails_next_attempt_at'))

    op.drop_table('collection_emails')
    with op.batch_alter_table('collection_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collection_decisions_project_id'))
        batch_op.drop_index(batch_op.f('ix_collection_decisions_batch_id'))

    op.drop_table('collection_decisions')
    with op.batch_alter_table('collection_batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collection_batches_state'))
        batch_op.drop_index(batch_op.f('ix_collection_batches_project_id'))
        batch_op.drop_index(batch_op.f('ix_collection_batches_job_id'))

    op.drop_table('collection_batches')
    with op.batch_alter_table('collection_projects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collection_projects_status'))
        batch_op.drop_index(batch_op.f('ix_collection_projects_grant_hash'))

    op.drop_table('collection_projects')
