"""Operator pages (dashboard, forms, job page, broken links) and the service-point page.

Operators log in with OPERATOR_PASSWORD (by default generated once into
VAR_DIR/operator_password) or an operator API token; service points log in with their
service-point API token. Flask-Login keeps the login in Flask's signed session cookie
(one login a session; the token or password behind it is re-checked on every request);
Flask-WTF's CSRFProtect checks the token every form carries. Jobs are requested through
`submissions.request_job`, as the API does, so duplicates, admission, callbacks and the
audit log behave the same.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from exporter import access, jobs, ratelimit, submissions, visibility, webhooks
from exporter.access import ApiToken, Principal
from exporter.admission import InsufficientStorage
from exporter.archiver.portals import count_portals, get_portal, list_portals
from exporter.archiver.reports import broken_links as broken_links_report
from exporter.config import kept_secret
from exporter.context import Context
from exporter.crypto import same
from exporter.errors import InvalidRequest, NotFound
from exporter.kinds import load_all
from exporter.models import ACTIVE_STATUSES, JOB_STATUSES, Job
from exporter.publish import client as zenodo_client
from exporter.publish import zenodo
from exporter.raids import registry

bp = Blueprint("pages", __name__, url_prefix="/pages")

LOGIN_RATE = ratelimit.Rate(10, 60)  # failed-or-not login attempts per client address
MODES = ("full", "incremental")
FORMATS = ("zip", "tar.gz")
SELECT_MAX = 40  # a choice among more than this many gets a search box instead of a <select>
SEARCH_LIMIT = 20  # suggestions per search


def ctx() -> Context:
    return current_app.config["EXPORTER"]


csrf = CSRFProtect()
logins = LoginManager()


@bp.record_once
def _sessions_and_csrf(state) -> None:
    app = state.app
    if not app.secret_key:
        app.secret_key = app.config["EXPORTER"].settings.secret_key
    # Assigned, not setdefault: Flask's defaults (SameSite unset, Secure off) are already there.
    app.config.update(
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=app.config["EXPORTER"].settings.public_url.startswith("https://"),
        # Only these pages' forms carry a CSRF token (checked in check_csrf); the JSON API
        # authenticates every request with its token and has no cookie to ride on.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # a form stays good for as long as its session
    )
    csrf.init_app(app)
    logins.init_app(app)


# --- who is logged in -----------------------------------------------------------------


def operator_password(settings) -> str:
    """OPERATOR_PASSWORD, or one generated once and kept in VAR_DIR/operator_password."""
    return settings.operator_password or kept_secret(Path(settings.var_dir), "operator_password", 18)


def _password_mark(password: str) -> str:
    """Stored in the session instead of the password; changing the password ends old sessions."""
    return hmac.new(ctx().settings.secret_key.encode(), b"operator:" + password.encode(), hashlib.sha256).hexdigest()[:32]


class Login(UserMixin):
    """The session's user for Flask-Login: id "password:<mark>" (the operator password) or
    "token:<id>" (an operator or service-point API token), re-checked on every request."""

    def __init__(self, login_id: str, principal: Principal):
        self.id = login_id
        self.principal = principal


@logins.user_loader
def _load_login(login_id: str) -> Login | None:
    via, _, value = login_id.partition(":")
    if via == "password" and same(_password_mark(operator_password(ctx().settings)), value):
        return Login(login_id, Principal(role="operator", name="operator (password)"))
    if via == "token" and value.isascii() and value.isdigit():
        with ctx().db.session() as s:
            row = s.get(ApiToken, int(value))
            if row is not None and row.revoked_at is None:
                return Login(login_id, Principal(role=row.role, token_id=row.id, name=row.name, service_point_id=row.service_point_id))
    return None


def logged_in(role: str) -> Principal | None:
    """The session's principal if it has `role` (a service point is no operator, and back)."""
    principal = getattr(current_user, "principal", None)
    return principal if principal is not None and principal.role == role else None


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {"flower_url": ctx().settings.flower_url, "operator": g.get("operator")}


@bp.before_request
def check_csrf():
    """Every form POST carries this site's CSRF token (the collections pages use this check too)."""
    try:
        csrf.protect()  # POSTs only
    except CSRFError:
        abort(400, description="the form expired or did not come from this site; reload the page and try again")


def _login_required(role: str, login_endpoint: str, with_next: bool) -> Callable[[Callable], Callable]:
    """Views for `role` only (kept in g.operator or g.service_point); others go to its login."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = logged_in(role)
            setattr(g, role, principal)
            if principal is None:
                if request.path.endswith(".json"):
                    return jsonify({"error": "log in first"}), 401
                return redirect(url_for(login_endpoint, next=request.full_path.rstrip("?")) if with_next else url_for(login_endpoint))
            return view(*args, **kwargs)

        return wrapper

    return decorate


operator_required = _login_required("operator", "pages.login", with_next=True)
service_point_required = _login_required("service_point", "pages.sp_login", with_next=False)


def _login_throttled() -> str | None:
    """A message when this address tried to log in too often (guessing passwords or tokens)."""
    wait = ratelimit.take(ctx(), f"login:{request.remote_addr}", LOGIN_RATE)
    return f"too many login attempts; try again in {max(1, math.ceil(wait))} s" if wait > 0 else None


def _login_status(error: str | None) -> int:
    if error is None:
        return 200
    return 429 if error.startswith("too many login attempts") else 401


def _safe_next(target: str | None, default: str) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        secret = request.form.get("secret", "").strip()
        if error := _login_throttled():
            pass
        elif secret.startswith(access.TOKEN_PREFIX):
            principal = access.authenticate(ctx(), secret)
            if principal is not None and principal.role in ("operator", "approver"):
                login_user(Login(f"token:{principal.token_id}", principal))
            else:
                error = "this token is not a valid operator or approver token"
        elif secret and same(operator_password(ctx().settings), secret):
            principal = Principal(role="operator", name="operator (password)")
            login_user(Login(f"password:{_password_mark(secret)}", principal))
        else:
            error = "wrong password"
        if error is None:
            access.audit(ctx(), principal, "pages.login", ip=request.remote_addr)
            home = url_for("collections_pages.projects") if principal.role == "approver" else url_for("pages.dashboard")
            return redirect(_safe_next(request.args.get("next"), home))
    return render_template("pages/login.html", error=error, title="Operator login", action=url_for("pages.login", next=request.args.get("next")), hint="Operator password, or an operator or approver API token"), _login_status(error)


@bp.post("/logout")
def logout():
    logout_user()
    return redirect(url_for("pages.login"))


# --- agencies, service points and portals: to pick from, and to name ---------------------


@dataclass(frozen=True)
class Choice:
    value: str  # what the form submits (an id or a portal's name)
    label: str  # what a person reads


def _agency_choices(q: str | None, limit: int | None) -> list[Choice]:
    with ctx().db.session() as s:
        return [Choice(a.id, registry.agency_label(a)) for a in registry.list_agencies(s, q, limit)]


def _service_point_choices(q: str | None, limit: int | None) -> list[Choice]:
    with ctx().db.session() as s:
        return [Choice(str(sp.id), registry.service_point_label(sp, ag)) for sp, ag in registry.list_service_points(s, q, limit)]


def _portal_choices(q: str | None, limit: int | None) -> list[Choice]:
    return [Choice(p.name, f"{p.name} · {p.base_url}") for p in list_portals(ctx(), q, limit)]


def _counted(count: Callable[[Any], int]) -> Callable[[], int]:
    def run() -> int:
        with ctx().db.session() as s:
            return count(s)

    return run


@dataclass(frozen=True)
class ChoiceSource:
    count: Callable[[], int]
    search: Callable[[str | None, int | None], list[Choice]]
    empty: str  # shown when there is nothing to pick


CHOICES: dict[str, ChoiceSource] = {
    "agencies": ChoiceSource(_counted(registry.count_agencies), _agency_choices, "No registration agency is registered yet (importing raids registers theirs)."),
    "service_points": ChoiceSource(_counted(registry.count_service_points), _service_point_choices, "No service point is registered yet (importing raids registers theirs)."),
    "portals": ChoiceSource(lambda: count_portals(ctx()), _portal_choices, "No portal is registered yet (`exporter portals add`)."),
}


def scope_labels(rows: Iterable[Job]) -> dict[str, tuple[str, str]]:
    """For each job that names an agency or a service point: (what it is, its name and id)."""
    with ctx().db.session() as s:
        return registry.scope_labels(s, rows)


@bp.get("/choices/<source>.json")
@operator_required
def choices(source: str):
    """Up to SEARCH_LIMIT agencies, service points or portals matching ?q=, for the forms' search boxes."""
    src = CHOICES.get(source)
    if src is None:
        return jsonify({"error": f"no list {source!r}; one of {', '.join(CHOICES)}", "field": "source"}), 404
    found = src.search(request.args.get("q", "")[:200] or None, SEARCH_LIMIT + 1)
    return jsonify({"choices": [asdict(c) for c in found[:SEARCH_LIMIT]], "more": len(found) > SEARCH_LIMIT})


# --- dashboard and job page -------------------------------------------------------------


def progress_view(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "percentage": job.percentage,
        "done": job.progress_done,
        "total": job.progress_total,
        "error": job.error,
        "final": job.status not in ACTIVE_STATUSES,
    }


@bp.get("/")
@operator_required
def dashboard():
    status = request.args.get("status") or None
    kind = request.args.get("kind") or None
    if status not in (None, *JOB_STATUSES):
        status = None
    rows = jobs.list_jobs(ctx(), status=status, kind=kind, limit=200)
    return render_template("pages/dashboard.html", jobs=rows, scopes=scope_labels(rows), status=status, kind=kind, statuses=JOB_STATUSES, kinds=sorted(load_all()))


@bp.get("/jobs.json")
@operator_required
def jobs_json():
    """Progress of the jobs named in ?ids=a,b (at most 200), for the pages' progress bars."""
    ids = [i for i in request.args.get("ids", "").split(",") if i][:200]
    with ctx().db.session() as s:
        rows = s.scalars(select(Job).where(Job.id.in_(ids))).all() if ids else []
        return jsonify({"jobs": [progress_view(j) for j in rows]})


@bp.get("/jobs/<job_id>")
@operator_required
def job_page(job_id: str):
    try:
        job = jobs.get(ctx(), job_id)
    except NotFound:
        abort(404)
    return render_template(
        "pages/job.html",
        job=job,
        scope=scope_labels([job]).get(job.id),
        params=json.dumps(job.params, indent=2, sort_keys=True),
        result=json.dumps(job.result, indent=2, sort_keys=True) if job.result else None,
        publication=_publication_of(job),
        callbacks=[webhooks.redact(u) for u in webhooks.callbacks_of(ctx(), job_id)],
        deliveries=webhooks.deliveries_of(ctx(), job_id),
        notifications=webhooks.notifications_of(ctx(), job_id),
        redact=webhooks.redact,
        api_status=webhooks.api_status,
    )


def _publication_of(job: Job) -> dict[str, Any] | None:
    """What the job page says about Zenodo: a publish job's record, or where a public export was published."""
    if job.kind == zenodo.KIND:
        return zenodo.publication_view(job)
    if job.kind == "export_public":
        return zenodo.publication_of_export(ctx(), job.id)
    return None


@bp.get("/jobs/<job_id>/files/<name>")
@operator_required
def download(job_id: str, name: str):
    return _download(job_id, name, g.operator)


def _download(job_id: str, name: str, principal: Principal):
    """Audit the download, then send the browser to an expiring storage URL."""
    try:
        job = jobs.get(ctx(), job_id)
    except NotFound:
        abort(404)
    if not access.can_see(principal, job):
        abort(404)
    art = next((a for a in job.artifacts if a.name == name), None)
    if art is None:
        abort(404)
    if art.deleted_at is not None or job.status == "expired":
        abort(410, description="this file has expired and was deleted; request the export again")
    url = ctx().storage.download_url(art.key, ctx().settings.download_url_ttl, art.filename)
    access.audit(ctx(), principal, "pages.download", job_id=job_id, target=art.key, ip=request.remote_addr, detail={"artifact": name})
    return redirect(url, code=302)


@bp.post("/jobs/<job_id>/cancel")
@operator_required
def cancel(job_id: str):
    try:
        jobs.cancel(ctx(), job_id)
    except NotFound:
        abort(404)
    access.audit(ctx(), g.operator, "pages.cancel", job_id=job_id, ip=request.remote_addr)
    return redirect(url_for("pages.job_page", job_id=job_id))


class RateLimited(Exception):
    def __init__(self, seconds: int):
        super().__init__(f"too many jobs requested with this token; retry in {seconds} s")
        self.seconds = seconds


def check_rate(principal: Principal) -> None:
    """The API's per-token limit on job creation, on the same bucket (pages are no way around it)."""
    if principal.token_id is None:
        return
    wait = ratelimit.take(ctx(), f"create:token:{principal.token_id}", ctx().settings.api_rate_limit)
    if wait > 0:
        raise RateLimited(max(1, math.ceil(wait)))


# --- forms that start jobs --------------------------------------------------------------


@dataclass
class Field:
    name: str
    label: str
    kind: str = "text"  # text, number, select, textarea, checkbox, pick (one of CHOICES[source])
    choices: tuple[str, ...] = ()
    default: str = ""
    help: str = ""
    required: bool = True
    source: str = ""  # for kind "pick": the name of its list in CHOICES


@dataclass
class JobForm:
    name: str
    title: str
    kind: str
    fields: list[Field]
    build: Callable[[dict[str, str]], dict[str, Any]]
    help: str = ""
    extra: dict = field(default_factory=dict)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number", field=name) from None


def _agency(raw: str) -> str:
    with ctx().db.session() as s:
        agency = registry.find_agency(s, raw)
    if agency is None:
        raise InvalidRequest(f"Registration agency: no agency {raw!r} is registered; pick one from the list", field="agency")
    return agency.id


def _service_point(raw: str) -> int:
    with ctx().db.session() as s:
        sp = registry.find_service_point(s, raw)
    if sp is None:
        raise InvalidRequest(f"Service point: no service point {raw!r} is registered; pick one from the list", field="service_point")
    return sp.id


def _publication(raw: str) -> dict[str, Any]:
    """The agency's newest full public export, to be published (or why it cannot be)."""
    agency = _agency(raw)
    if not zenodo_client.configured(ctx().settings):
        raise InvalidRequest("Publishing to Zenodo is not configured: set EXPORTER_ZENODO_URL and EXPORTER_ZENODO_TOKEN", field="agency")
    return {"agency": agency, "export": zenodo.publishable_export(ctx(), agency).id}


def _portal(raw: str) -> str:
    try:
        return get_portal(ctx(), raw).name
    except NotFound:
        raise InvalidRequest(f"Portal: no portal {raw!r} is registered; pick one from the list", field="portal") from None


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number", field=name) from None


COMMON = [Field("description", "Description", required=False), Field("callbackURLs", "Callback URLs (one a line)", "textarea", required=False, help="each gets a signed POST when the job ends")]
MODE_FORMAT = [Field("mode", "Mode", "select", MODES, "full"), Field("format", "Format", "select", FORMATS, "zip")]

FORMS: dict[str, JobForm] = {
    f.name: f
    for f in [
        JobForm("public", "Public export", "export_public", [Field("agency", "Registration agency", "pick", source="agencies"), *MODE_FORMAT],
                lambda v: {"agency": _agency(v["agency"]), "mode": v["mode"], "format": v["format"]},
                help="Every open RAiD in full and the public fields of the others, for one agency."),
        JobForm("private", "Private export", "export_private", [Field("service_point", "Service point", "pick", source="service_points"), *MODE_FORMAT],
                lambda v: {"service_point": _service_point(v["service_point"]), "mode": v["mode"], "format": v["format"]},
                help="Every RAiD of one service point, closed data included; private storage."),
        JobForm("zenodo", "Publish to Zenodo", zenodo.KIND, [Field("agency", "Registration agency", "pick", source="agencies")],
                lambda v: _publication(v["agency"]),
                help="The agency's newest full public export becomes the next version of its Zenodo record."),
        JobForm("archive", "Archive URLs", "archive_urls", [Field("urls", "URLs to archive (one a line)", "textarea")],
                lambda v: {"urls": _lines(v["urls"])}, help="Download each URL, store a copy and record the outcome."),
        JobForm("sweep", "Portal sweep", "sweep_portal", [Field("portal", "Registered portal", "pick", source="portals")],
                lambda v: {"portal": _portal(v["portal"])}, help="Archive every resource of a registered CKAN portal."),
        JobForm("synthetic", "Synthetic job (engine test)", "synthetic",
                [Field("size", "Bytes", "number", default="1048576"), Field("steps", "Steps", "number", default="8"), Field("delay", "Seconds between steps", "number", default="0.25")],
                lambda v: {"size": _int("size", v["size"]), "steps": _int("steps", v["steps"]), "delay": _number("delay", v["delay"])},
                help="Writes N bytes in steps; exercises workers, progress and downloads."),
    ]
}


def _status_of(exc: Exception) -> int:
    return {InsufficientStorage: 507, RateLimited: 429}.get(type(exc), 400)


def _form_values(form: JobForm) -> dict[str, str]:
    values = {}
    for f in [*form.fields, *COMMON]:
        raw = request.form.get(f.name, "")
        values[f.name] = raw.strip() if f.kind != "textarea" else raw
        if f.required and not values[f.name].strip():
            raise InvalidRequest(f"{f.label} is required", field=f.name)
    return values


def _pickers(forms: Iterable[JobForm]) -> dict[str, dict[str, Any]]:
    """For each list the forms pick from: all its choices when few (a <select>), else a search URL."""
    pickers: dict[str, dict[str, Any]] = {}
    for f in (f for form in forms for f in form.fields if f.source and f.source not in pickers):
        src = CHOICES[f.source]
        count = src.count()
        pickers[f.source] = {"count": count, "empty": src.empty, "url": url_for("pages.choices", source=f.source), "options": src.search(None, None) if count <= SELECT_MAX else None}
    return pickers


def _render_forms(errors: dict[str, tuple[str, str | None]] | None = None, values: dict[str, dict[str, str]] | None = None, status: int = 200):
    kinds = load_all()
    installed = {n: f.kind in kinds for n, f in FORMS.items()}
    pickers = _pickers(f for n, f in FORMS.items() if installed[n])
    chosen = {}  # the name beside an id already in a search box (the form came back with an error)
    for name, submitted in (values or {}).items():
        for f in FORMS[name].fields:
            value = str(submitted.get(f.name) or "").strip()
            if value and f.source in pickers and pickers[f.source]["options"] is None:
                chosen[(name, f.name)] = next((c.label for c in CHOICES[f.source].search(value, SEARCH_LIMIT) if c.value == value), "")
    return render_template(
        "pages/new.html", forms=FORMS.values(), common=COMMON, installed=installed, pickers=pickers, chosen=chosen, errors=errors or {}, values=values or {}
    ), status


@bp.get("/new")
@operator_required
def new():
    return _render_forms()


@bp.post("/new/<name>")
@operator_required
def submit(name: str):
    form = FORMS.get(name) or abort(404)
    values: dict[str, str] = {}
    try:
        values = _form_values(form)
        params = form.build(values)
        check_rate(g.operator)
        sub = submissions.request_job(
            ctx(), form.kind, params, requested_by=g.operator.actor, description=values["description"] or None, callback_urls=_lines(values["callbackURLs"])
        )
    except (InvalidRequest, InsufficientStorage, NotFound, RateLimited) as exc:
        page, status = _render_forms({name: (str(exc), getattr(exc, "field", None))}, {name: values or dict(request.form)}, _status_of(exc))
        return page, status, ({"Retry-After": str(exc.seconds)} if isinstance(exc, RateLimited) else {})
    access.audit(ctx(), g.operator, "pages.create", job_id=sub.job.id, target=form.kind, ip=request.remote_addr, detail={"outcome": sub.outcome})
    return redirect(url_for("pages.job_page", job_id=sub.job.id, outcome=None if sub.outcome == "created" else sub.outcome))


# --- reports ---------------------------------------------------------------------------------


@bp.get("/reports/broken-links")
@operator_required
def broken_links():
    organization = request.args.get("organization") or None
    data = broken_links_report(ctx(), organization=organization)
    return render_template("pages/broken_links.html", report=data, organization=organization)


# --- the service-point page --------------------------------------------------------------


def service_point_jobs(principal: Principal, limit: int = 50) -> list[Job]:
    """This service point's private exports, newest first."""
    query = (
        select(Job)
        .options(selectinload(Job.artifacts))
        .where(Job.kind.in_(visibility.PRIVATE_KINDS), visibility.service_point_column() == str(principal.service_point_id))
        .order_by(Job.created_at.desc())
        .limit(limit)
    )
    with ctx().db.session() as s:
        return [j for j in s.scalars(query) if access.can_see(principal, j)]


@bp.route("/sp/login", methods=["GET", "POST"])
def sp_login():
    error = None
    if request.method == "POST":
        principal = None if (error := _login_throttled()) else access.authenticate(ctx(), request.form.get("secret", "").strip())
        if principal is not None and principal.role == "service_point":
            login_user(Login(f"token:{principal.token_id}", principal))
            access.audit(ctx(), principal, "pages.login", ip=request.remote_addr)
            return redirect(url_for("pages.sp_home"))
        error = error or "this token is not a valid service-point token"
    return render_template("pages/login.html", error=error, title="Service point login", action=url_for("pages.sp_login"), hint="Your service point's API token"), _login_status(error)


@bp.post("/sp/logout")
def sp_logout():
    logout_user()
    return redirect(url_for("pages.sp_login"))


@bp.route("/sp/", methods=["GET", "POST"])
@service_point_required
def sp_home():
    principal: Principal = g.service_point
    error = None
    status = 200
    headers: dict[str, str] = {}
    if request.method == "POST":
        mode, fmt = request.form.get("mode", "full"), request.form.get("format", "zip")
        try:
            if mode not in MODES or fmt not in FORMATS:
                raise InvalidRequest("choose a mode and a format from the lists", field="mode" if mode not in MODES else "format")
            kind, params = submissions.export_params("private", {"servicePoint": principal.service_point_id}, mode, fmt)
            check_rate(principal)
            sub = submissions.request_job(ctx(), kind, params, requested_by=principal.actor, description=request.form.get("description") or None)
        except (InvalidRequest, InsufficientStorage, NotFound, RateLimited) as exc:
            error, status = str(exc), _status_of(exc)
            if isinstance(exc, RateLimited):
                headers["Retry-After"] = str(exc.seconds)
        else:
            access.audit(ctx(), principal, "pages.create", job_id=sub.job.id, target=kind, ip=request.remote_addr, detail={"outcome": sub.outcome})
            return redirect(url_for("pages.sp_home"))
    number = registry.service_point_number(principal.service_point_id)
    with ctx().db.session() as s:
        known = registry.service_points_by_id(s, [number] if number is not None else []).get(number)
    sp_name = f"{known[0].name} ({known[0].id})" if known else f"service point {principal.service_point_id}"
    return render_template(
        "pages/service_point.html", principal=principal, sp_name=sp_name, sp_agency=registry.agency_label(known[1]) if known else None,
        jobs=service_point_jobs(principal), error=error, modes=MODES, formats=FORMATS,
    ), status, headers


@bp.get("/sp/jobs.json")
@service_point_required
def sp_jobs_json():
    return jsonify({"jobs": [progress_view(j) for j in service_point_jobs(g.service_point)]})


@bp.get("/sp/jobs/<job_id>/files/<name>")
@service_point_required
def sp_download(job_id: str, name: str):
    return _download(job_id, name, g.service_point)
