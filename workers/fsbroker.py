"""kombu's filesystem transport with atomic message files.

The stock transport creates `<n>_<uuid>.<queue>.msg` under its final name and then writes
it; a worker polling the folder can move and read it in between, get an empty or partial
body, and its consumer stops on the JSONDecodeError ("Unrecoverable error"): under
`exporter up`, a sweep that fans out parts while its worker polls killed the worker. Here a
message is written under a name the consumer and the broker probe ignore and renamed into
place, so a reader sees a whole message or none.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

TRANSPORT = "workers.fsbroker:Transport"  # Celery's broker_transport for filesystem://
PARTIAL = ".part"  # what `<name>.msg.part` is until the rename; no consumer reads it


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put `payload` onto `queue`: written in full, then renamed to the name consumers read."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        try:
            with open(final + PARTIAL, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(final + PARTIAL, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def transport_options(folder: Path) -> dict:
    """The embedded broker's transport options: its folders under `folder` (made if missing),
    processed messages kept, polled every 20 ms (1 s, kombu's default, makes each task wait)."""
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "processed_folder": str(folder / "processed"),
        "store_processed": True,
        "polling_interval": 0.02,
    }
