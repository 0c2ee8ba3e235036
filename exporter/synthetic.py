"""A synthetic job kind that writes N bytes to storage in steps, reporting progress.

It exists to exercise the engine (claims, heartbeats, progress, artifacts, the reaper)
before and beside the real kinds; it exports nothing of value.
"""

from __future__ import annotations

import time
from typing import Any

from . import orphans
from .errors import InvalidRequest
from .kinds import JobKind, register
from .runner import JobRun

MAX_SIZE = 1 << 32


def normalize(params: dict[str, Any]) -> dict[str, Any]:
    out = {"size": params.pop("size", 1024), "steps": params.pop("steps", 4), "delay": params.pop("delay", 0.0)}
    if params:
        raise InvalidRequest(f"unknown parameter(s): {', '.join(sorted(params))}", field=sorted(params)[0])
    for name in ("size", "steps"):
        if not isinstance(out[name], int) or isinstance(out[name], bool) or out[name] < 1:
            raise InvalidRequest(f"{name} must be a positive whole number", field=name)
    if out["size"] > MAX_SIZE:
        raise InvalidRequest(f"size must be at most {MAX_SIZE}", field="size")
    if not isinstance(out["delay"], (int, float)) or isinstance(out["delay"], bool) or not 0 <= out["delay"] <= 60:
        raise InvalidRequest("delay must be a number of seconds between 0 and 60", field="delay")
    out["steps"] = min(out["steps"], out["size"])
    return out


def run(job: JobRun) -> dict[str, Any]:
    size, steps, delay = job.params["size"], job.params["steps"], job.params["delay"]
    step = -(-size // steps)

    def chunks():
        written = 0
        for i in range(steps):
            n = min(step, size - written)
            if n <= 0:
                break
            yield bytes([i % 256]) * n
            written += n
            job.progress(written, size, force=True)
            if delay:
                time.sleep(delay)

    job.progress(0, size, force=True)
    art = job.add_artifact("data", f"synthetic/{job.job_id}/{job.run_id}/data.bin", chunks())
    return {"bytes": art.size, "sha256": art.sha256}


register(JobKind(name="synthetic", task="exporter.write_synthetic", queue="engine", run=run, normalize=normalize, description="writes N bytes in steps to test the engine", estimate=lambda ctx, kind, params: int(params["size"])))
orphans.register("synthetic/", orphans.artifact_keys)
