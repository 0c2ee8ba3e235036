"""The collections API over HTTP (Flask's test client for the shapes): projects, polls, batches,
approve and decline with the approver role; bad input is a 400 naming the field."""

from __future__ import annotations

from exporter import access

from .api_support import access_rate, make_api
from .collections_helpers import make_fits, make_small_png, run_sent


def test_projects_batches_and_decisions_through_the_api(ctx, tmp_path):
    roots = tmp_path / "sources"
    folder = roots / "zoo"
    folder.mkdir(parents=True)
    make_fits(folder / "m31.fits", obj="M31")
    make_small_png(folder / "b.png", 1)
    (folder / "c.txt").write_text("text")
    api = make_api(ctx, collections_source_roots=str(roots), collections_settle_seconds=0, api_rate_limit=access_rate(1000))
    api.tokens["approver"] = access.create_token(ctx, "approver", name="approver")[1]

    body = {"name": "zoo", "source": str(folder), "ownerEmail": "pi@example.org", "ownerName": "Pat", "zooniverseProject": "1234"}
    assert api.post("/collections/projects", body, who="approver").status_code == 403
    assert api.post("/collections/projects", body, who=None).status_code == 401
    r = api.post("/collections/projects", body)
    assert r.status_code == 201, r.json
    assert r.json["grantToken"].startswith("cg_") and r.json["grant"]["valid"] and r.headers["Location"].endswith("/collections/projects/zoo")
    for bad, field in (({**body, "name": "zoo2", "extra": 1}, "extra"), ({**body, "name": "Bad Name"}, "name"), ({**body, "name": "z3", "source": "/etc"}, "source"),
                       ({**body, "name": "z4", "ownerEmail": "nope"}, "owner"), ({k: v for k, v in body.items() if k != "source"}, "source"), ({**body, "name": "z5", "callbackURL": "ftp://x"}, "callbackURL")):
        got = api.post("/collections/projects", bad)
        assert got.status_code == 400 and got.json["field"] == field, (bad, got.json)
    assert api.post("/collections/projects", body).json["field"] == "name"  # exists

    polled = api.post("/collections/projects/zoo/poll")
    assert polled.status_code == 200 and polled.json["found"] == 3 and polled.json["batch"], polled.json
    assert api.post("/collections/projects/nope/poll").status_code == 404
    run_sent(ctx)
    listed = api.get("/collections/batches?state=awaiting_approval", who="approver").json["batches"]
    assert [b["id"] for b in listed] == [polled.json["batch"]]
    assert api.get("/collections/batches?state=nope").json["field"] == "state"
    batch = api.get(f"/collections/batches/{polled.json['batch']}", who="approver").json
    assert batch["counts"]["converted"] == 2 and batch["refusedFiles"][0]["sourceName"] == "c.txt" and batch["refusedFiles"][0]["reason"]
    assert {f["objectId"] for f in batch["files"]} >= {"M31"} and batch["import"]["state"] is None
    assert api.get("/collections/batches/999999").status_code == 404
    project = api.get("/collections/projects/zoo", who="reader").json
    assert project["batches"][0]["id"] == batch["id"] and project["owner"] == {"name": "Pat", "email": "pi@example.org"}

    assert api.post(f"/collections/batches/{batch['id']}/approve", {}, who="reader").status_code == 403
    declined = api.post(f"/collections/batches/{batch['id']}/decline", {}, who="approver")
    assert declined.status_code == 400 and declined.json["field"] == "reason"
    approved = api.post(f"/collections/batches/{batch['id']}/approve", {"note": "ok"}, who="approver")
    assert approved.status_code == 200 and approved.json["state"] == "approved", approved.json
    assert approved.json["decisions"][0]["by"].startswith("token:") and approved.json["decisions"][0]["note"] == "ok"
    again = api.post(f"/collections/batches/{batch['id']}/decline", {"reason": "late"}, who="approver")
    assert again.status_code == 400 and again.json["field"] == "batch" and "approved" in again.json["error"]
    run_sent(ctx)
    assert api.get(f"/collections/batches/{batch['id']}").json["manifestURL"].endswith("manifest.csv")
    assert [p["name"] for p in api.get("/collections/projects", who="approver").json["projects"]] == ["zoo"]
