"""kombu's filesystem transport, with each message file written whole before a worker can see it.

kombu's own `_put` creates `<time>_<uuid>.<queue>.msg` in the queue folder and then writes it; a
worker listing the folder in between takes the empty file and dies on it (`Unrecoverable error:
JSONDecodeError`, celery/kombu#1551), which stops `exporter up`. Here the message is written under
a name no queue matches (`.<name>.part`) and renamed to its name in one step (rename(2) within a
folder is atomic), so a reader sees no file or the whole message. celeryconfig.py selects this
transport (`broker_transport`) for the `filesystem://` broker.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

PART = ".part"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        part = os.path.join(self.data_folder_out, f".{name}{PART}")
        try:
            with open(part, "wb", buffering=0) as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(part, final)
        except OSError as exc:
            try:
                os.unlink(part)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
