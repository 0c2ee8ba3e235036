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


def test_the_owner_reads_the_project_and_revokes_the_grant_with_the_grant_token(ctx, tmp_path):
    from .collections_helpers import SmtpServer

    roots = tmp_path / "sources"
    for name in ("zoo", "other"):
        (roots / name).mkdir(parents=True)
    make_fits(roots / "zoo" / "m31.fits", obj="M31")
    make_small_png(roots / "zoo" / "b.png", 1)
    (roots / "zoo" / "c.txt").write_text("text")
    make_small_png(roots / "other" / "o.png", 2)
    smtp = SmtpServer().start()
    try:
        api = make_api(ctx, collections_source_roots=str(roots), collections_settle_seconds=0, api_rate_limit=access_rate(1000), smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="exporter@example.org")
        api.tokens["approver"] = access.create_token(ctx, "approver", name="approver")[1]
        api.tokens["owner"] = api.post("/collections/projects", {"name": "zoo", "source": str(roots / "zoo"), "ownerEmail": "pi@example.org"}).json["grantToken"]
        api.tokens["other_owner"] = api.post("/collections/projects", {"name": "other", "source": str(roots / "other"), "ownerEmail": "o@example.org"}).json["grantToken"]
        mine = api.post("/collections/projects/zoo/poll").json["batch"]
        theirs = api.post("/collections/projects/other/poll").json["batch"]
        run_sent(ctx)
        assert api.post(f"/collections/batches/{mine}/approve", {"note": "fine"}, who="approver").status_code == 200
        run_sent(ctx)

        # The owner, by the grant token alone: the project, its batches, counts, refusals with reasons, the manifest URL.
        project = api.get("/collections/projects/zoo", who="owner")
        assert project.status_code == 200, project.json
        assert project.json["name"] == "zoo" and project.json["grant"]["valid"] and [b["id"] for b in project.json["batches"]] == [mine]
        assert api.get(f"/collections/projects/{project.json['id']}", who="owner").json["name"] == "zoo"
        batch = api.get(f"/collections/batches/{mine}", who="owner").json
        assert batch["state"] == "published" and batch["counts"]["converted"] == 2 and batch["counts"]["refused"] == 1
        assert batch["refusedFiles"] == [{"sourceName": "c.txt", "reason": batch["refusedFiles"][0]["reason"]}] and batch["refusedFiles"][0]["reason"].startswith("unsupported")
        assert batch["manifestURL"].endswith("manifest.csv") and "overlap" not in batch and batch["decisions"][0]["note"] == "fine"
        assert [b["id"] for b in api.get("/collections/batches", who="owner").json["batches"]] == [mine]

        # Nothing else: another project is not there; every other operation is refused.
        for path in ("/collections/projects/other", f"/collections/batches/{theirs}", "/collections/batches?project=other", "/collections/projects/nope"):
            got = api.get(path, who="owner")
            assert got.status_code == 404 and got.json["error"].startswith("no collection "), (path, got.json)  # as if it did not exist
        assert api.post("/collections/projects/other/revoke-grant", who="owner").status_code == 404
        assert api.get("/collections/projects/zoo", who="other_owner").status_code == 404
        for method, path, body in (("post", f"/collections/batches/{mine}/decline", {"reason": "no"}), ("post", f"/collections/batches/{theirs}/approve", {}),
                                   ("post", "/collections/projects/zoo/poll", None), ("get", "/collections/projects", None), ("get", "/exports", None), ("get", "/audit", None)):
            got = api.post(path, body, who="owner") if method == "post" else api.get(path, who="owner")
            assert got.status_code == 403 and got.json["field"] == "Authorization", (path, got.status_code, got.json)
        api.tokens["wrong"] = "cg_" + "x" * 43
        assert api.get("/collections/projects/zoo", who="wrong").status_code == 401

        # The owner revokes the grant: told by e-mail, the token stops working, no poll reads the source.
        revoked = api.post("/collections/projects/zoo/revoke-grant", who="owner")
        assert revoked.status_code == 200 and revoked.json["grant"]["valid"] is False and revoked.json["grant"]["revokedAt"]
        run_sent(ctx)
        told = next(m for m in smtp.wait_for(1) if "revoked" in m["Subject"])
        assert told["To"] == "pi@example.org" and "reads nothing more" in told.get_content()
        for path in ("/collections/projects/zoo", f"/collections/batches/{mine}"):
            got = api.get(path, who="owner")
            assert got.status_code == 401 and got.headers["WWW-Authenticate"].startswith("Bearer"), (path, got.json)
        make_small_png(roots / "zoo" / "later.png", 3)
        polled = api.post("/collections/projects/zoo/poll").json
        assert polled["batch"] is None and "revoked" in polled["skipped"]
        again = api.post("/collections/projects/zoo/revoke-grant")  # an operator may revoke too; once revoked, nobody is told twice
        assert again.status_code == 200 and again.json["grant"]["valid"] is False
        run_sent(ctx)
        assert sum("revoked" in m["Subject"] for m in smtp.messages) == 1
        actors = [e["actor"] for e in api.get("/audit?action=collections.grant.revoke").json["items"]]
        assert len(actors) == 2 and any(a.startswith("owner of zoo") for a in actors)

        # The OpenAPI document says which operations take the grant.
        doc = api.get("/openapi.json", who=None).json
        granted = {f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m, op in ops.items() if m != "parameters" and {"grantToken": []} in (op.get("security") or [])}
        assert granted == {"GET /collections/projects/{projectName}", "POST /collections/projects/{projectName}/revoke-grant", "GET /collections/batches", "GET /collections/batches/{batchId}"}
        assert doc["components"]["securitySchemes"]["grantToken"]["scheme"] == "bearer"
    finally:
        smtp.stop()
