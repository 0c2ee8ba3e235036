"""The collections family's job kinds (queue `collections`), its end-of-job hook, the quarantine prefix cleanup watches and its retention."""

from __future__ import annotations

from .. import cleanup, jobs, orphans
from ..kinds import JobKind, register
from . import batches, hooks, notify, panoptes, publication, retention

for name, task, run, normalize, description in (
    (batches.KIND, "exporter.collect_batch", batches.run, batches.normalize, "retrieve a collection batch's new files into quarantine and convert them"),
    (publication.KIND, "exporter.publish_collection", publication.run, publication.normalize, "publish an approved collection batch and its Zooniverse manifest"),
    (panoptes.KIND, "exporter.import_collection", panoptes.run, panoptes.normalize, "import a published collection batch into its Zooniverse subject set"),
):
    register(JobKind(
        name=name, task=task, queue="collections", run=run, normalize=normalize, expiry_seconds=0, description=description,
        callback_payload=notify.webhook_payload, event_namespace="collection",
    ))
jobs.ON_FINAL.append(hooks.on_final)
orphans.register(batches.QUARANTINE, batches.quarantine_keys)
cleanup.register("collections_quarantine_deleted", retention.run)
