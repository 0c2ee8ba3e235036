"""The collections family's job kinds (queue `collections`), the quarantine prefix cleanup watches and its retention."""

from __future__ import annotations

from .. import cleanup, orphans
from ..kinds import JobKind, register
from . import batches, panoptes, publication, retention

register(JobKind(name=batches.KIND, task="exporter.collect_batch", queue="collections", run=batches.run, normalize=batches.normalize, expiry_seconds=0, description="retrieve a collection batch's new files into quarantine and convert them"))
register(JobKind(name=publication.KIND, task="exporter.publish_collection", queue="collections", run=publication.run, normalize=publication.normalize, expiry_seconds=0, description="publish an approved collection batch and its Zooniverse manifest"))
register(JobKind(name=panoptes.KIND, task="exporter.import_collection", queue="collections", run=panoptes.run, normalize=panoptes.normalize, expiry_seconds=0, description="import a published collection batch into its Zooniverse subject set"))
orphans.register(batches.QUARANTINE, batches.quarantine_keys)
cleanup.register("collections_quarantine_deleted", retention.run)
