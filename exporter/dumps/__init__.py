"""Dumps: a change feed of an agency's public records, and the `exporter sync` mirror client.

Publishing (exporter.dumps.publish, job kind `publish_dump`) writes immutable gzip JSON
Lines parts, a numbered manifest per change set chained by sha256, full snapshots now and
then, and LATEST.json last. The client (exporter.dumps.sync) keeps a local folder of one
file per raid in step with a dump, fetching only the change sets after its cursor.
"""
