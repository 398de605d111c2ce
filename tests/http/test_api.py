"""The JSON API of `btstore serve`, end to end against the real executable on both catalogs:
every route, every error status, the role matrix, tables read by pyarrow and polars, uploads,
and the OpenAPI document against the routes."""

import hashlib
import io
import json
import math
import sqlite3
import uuid

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from conftest import Server, make_btstore

START, END = "2020-01-01", "2020-03-01"


class Site:
    """A catalog with jobs of two users, tokens of every role, and a server over it."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    bt = make_btstore(request.param, request, tmp)
    s = Site()
    s.bt = bt
    s.sample = tmp / "sample"
    bt.ok("bundle", "sample", s.sample, "--days", 30, "--symbols", 20)
    for user in ("alice", "bob"):
        bt.ok("import", s.sample, "--alpha", f"imported_{user}", "--start", START, "--end", END,
              "--user", user, "--job-id", f"done-{user}")
        bt.ok("submit", "--alpha", f"pending_{user}", "--start", START, "--end", END, "--user", user,
              "--job-id", f"wait-{user}")
    s.tokens = {role: bt.token(user, role) for user, role in
                (("rita", "reader"), ("alice", "submitter"), ("root", "admin"))}
    s.tokens["bob"] = bt.token("bob", "submitter")
    s.server = Server(bt)
    s.anon = s.server.client()
    s.reader = s.server.client(s.tokens["reader"])
    s.alice = s.server.client(s.tokens["submitter"])
    s.bob = s.server.client(s.tokens["bob"])
    s.admin = s.server.client(s.tokens["admin"])
    yield s
    assert s.server.stop() == 0


def new_id():
    return "t-" + uuid.uuid4().hex[:12]


def submit(client, **fields):
    body = {"alpha": "a", "start": START, "end": END, "job_id": new_id()}
    body.update(fields)
    return client.post("/api/v1/jobs", body)


def assert_error(res, status, code):
    assert res.status == status, (res.status, res.body)
    doc = res.json()
    assert set(doc) == {"error"}
    assert doc["error"]["code"] == code
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    assert isinstance(doc["error"]["details"], dict)


# --- Monitoring and the document -----------------------------------------------------------------

def test_healthz_needs_no_token_and_names_the_catalog(site):
    res = site.anon.get("/healthz")
    assert res.status == 200
    assert res.json()["status"] == "ok"
    assert res.json()["catalog"] in ("sqlite", "postgresql")


def test_metrics_count_jobs_by_status_and_requests_by_route(site):
    counts = {status: len(site.reader.get(f"/api/v1/jobs?status={status}&limit=1000").json()["jobs"])
              for status in ("pending", "completed")}
    text = site.anon.get("/metrics").body.decode()
    for status, count in counts.items():
        assert f'btstore_jobs{{status="{status}"}} {count}\n' in text
    assert "btstore_pending_oldest_age_seconds" in text
    assert "btstore_running_heartbeat_age_seconds" in text
    assert 'btstore_http_requests_total{route="list_jobs",method="GET",status="200"}' in text
    assert 'btstore_http_request_duration_seconds_bucket{route="list_jobs",method="GET",le="+Inf"}' \
        in text


# Every route the server has, as OpenAPI names them; the test below checks the document against
# this list and each entry against the running server.
ROUTES = {
    ("get", "/api/v1/jobs"), ("post", "/api/v1/jobs"), ("get", "/api/v1/jobs/{job_id}"),
    ("get", "/api/v1/jobs/{job_id}/result"), ("get", "/api/v1/jobs/{job_id}/tables/{name}"),
    ("get", "/api/v1/jobs/{job_id}/charts"), ("get", "/api/v1/jobs/{job_id}/events"),
    ("post", "/api/v1/jobs/{job_id}/cancel"), ("post", "/api/v1/jobs/{job_id}/resume"),
    ("post", "/api/v1/jobs/{job_id}/pin"), ("post", "/api/v1/import"),
    ("get", "/api/v1/compare/ic"), ("post", "/api/v1/cleanup"), ("post", "/api/v1/verify"),
    ("get", "/api/v1/whoami"), ("get", "/api/v1/openapi.json"), ("get", "/healthz"),
    ("get", "/metrics"),
}


def test_openapi_document_matches_the_routes(site):
    doc = site.anon.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == ROUTES
    for method, path in sorted(ROUTES):
        concrete = path.replace("{job_id}", "done-alice").replace("{name}", "daily_ic")
        if concrete.endswith("/events") or concrete.endswith("/cancel") or \
                concrete.endswith("/resume") or concrete.endswith("/pin"):
            concrete = concrete.replace("done-alice", "no-such-job")
        res = site.admin.request(method.upper(), concrete, body={} if method == "post" else None)
        # Whatever the answer, it is the route's, not "no route".
        assert not (res.status == 404 and b"no route" in res.body), (method, path)
    # A path the document does not have is no route, with the envelope.
    res = site.admin.get("/api/v1/nothing")
    assert_error(res, 404, "InvalidArgument")


# --- Authentication and roles --------------------------------------------------------------------

def test_missing_bad_and_revoked_tokens_are_401(site):
    res = site.anon.get("/api/v1/jobs")
    assert_error(res, 401, "Unauthenticated")
    assert res.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(site.server.client("bts_" + "0" * 64).get("/api/v1/jobs"), 401, "Unauthenticated")
    assert_error(site.anon.get("/api/v1/jobs", headers={"Authorization": "Basic eDp5"}), 401,
                 "Unauthenticated")
    doomed = site.bt.ok("token", "create", "--user", "zed", "--role", "admin")
    client = site.server.client(doomed["token"])
    assert client.get("/api/v1/jobs").status == 200
    site.bt.ok("token", "revoke", doomed["token_id"])
    assert_error(client.get("/api/v1/jobs"), 401, "Unauthenticated")


def test_the_bearer_scheme_is_case_insensitive(site):
    res = site.anon.get("/api/v1/whoami", headers={"Authorization": "bearer " + site.tokens["reader"]})
    assert res.status == 200 and res.json()["user"] == "rita"


def test_only_token_hashes_are_stored(site):
    listed = site.bt.ok("token", "list")["tokens"]
    assert listed and all("token" not in t for t in listed)
    if site.bt.url.startswith("sqlite:"):
        db = sqlite3.connect(site.bt.url[len("sqlite:"):])
        rows = db.execute("SELECT token_hash FROM btstore_tokens").fetchall()
        hashes = {r[0] for r in rows}
        assert hashlib.sha256(site.tokens["admin"].encode()).hexdigest() in hashes
        dump = "\n".join(db.iterdump())
        assert site.tokens["admin"] not in dump


def test_whoami_says_user_and_role(site):
    assert site.alice.get("/api/v1/whoami").json() == {"user": "alice", "role": "submitter",
                                                       "auth": "token"}


# (who, action) -> expected status. Actions act on jobs of alice and bob.
def role_matrix_cases():
    reads = ["list", "show", "result", "table", "charts", "compare"]
    cases = []
    for who in ("reader", "alice", "admin"):
        for action in reads:
            cases.append((who, action, 200))
    cases += [
        ("reader", "submit", 403), ("alice", "submit", 201), ("admin", "submit", 201),
        ("reader", "cancel_own", 403), ("alice", "cancel_own", 200), ("admin", "cancel_other", 200),
        ("alice", "cancel_other", 403),
        ("reader", "pin", 403), ("alice", "pin", 200), ("alice", "pin_other", 403),
        ("admin", "pin_other", 200),
        ("alice", "resume_own", 200), ("alice", "resume_other", 403),
        ("reader", "import", 403), ("alice", "import", 201),
        ("reader", "cleanup", 403), ("alice", "cleanup", 403), ("admin", "cleanup", 200),
        ("reader", "verify", 403), ("alice", "verify", 403), ("admin", "verify", 200),
        ("alice", "submit_as_other", 403), ("admin", "submit_as_other", 201),
    ]
    return cases


def fresh_pending(site, user):
    client = site.alice if user == "alice" else site.bob
    res = submit(client)
    assert res.status == 201, res.body
    return res.json()["job_id"]


def fresh_cancelled(site, user):
    job_id = fresh_pending(site, user)
    assert site.admin.post(f"/api/v1/jobs/{job_id}/cancel").status == 200
    return job_id


def upload(client, directory, job_id, fields=None, names=None):
    """POST the bundle files of `directory` as multipart/form-data."""
    boundary = "btstore" + uuid.uuid4().hex
    parts = []
    form = {"alpha": "uploaded", "start": START, "end": END, "job_id": job_id}
    form.update(fields or {})
    for k, v in form.items():
        if v is None:
            continue
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                     .encode())
    for path in sorted(directory.iterdir()):
        name = (names or {}).get(path.name, path.name)
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                     f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                     + path.read_bytes() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return client.request("POST", "/api/v1/import", raw=body,
                          content_type=f"multipart/form-data; boundary={boundary}")


@pytest.mark.parametrize("who,action,expected", role_matrix_cases())
def test_role_matrix(site, who, action, expected):
    client = {"reader": site.reader, "alice": site.alice, "admin": site.admin}[who]
    if action == "list":
        res = client.get("/api/v1/jobs")
    elif action == "show":
        res = client.get("/api/v1/jobs/done-bob")
    elif action == "result":
        res = client.get("/api/v1/jobs/done-bob/result")
    elif action == "table":
        res = client.get("/api/v1/jobs/done-bob/tables/daily_ic")
    elif action == "charts":
        res = client.get("/api/v1/jobs/done-bob/charts")
    elif action == "compare":
        res = client.get("/api/v1/compare/ic?ids=done-alice,done-bob")
    elif action == "submit":
        res = submit(client)
    elif action == "submit_as_other":
        res = submit(client, user="bob")
    elif action in ("cancel_own", "cancel_other"):
        owner = "alice" if action == "cancel_own" and who == "alice" else "bob"
        res = client.post(f"/api/v1/jobs/{fresh_pending(site, owner)}/cancel")
    elif action in ("pin", "pin_other"):
        owner = "bob" if action == "pin_other" else "alice"
        res = client.post(f"/api/v1/jobs/{fresh_pending(site, owner)}/pin", {"pinned": True})
    elif action in ("resume_own", "resume_other"):
        owner = "alice" if action == "resume_own" else "bob"
        res = client.post(f"/api/v1/jobs/{fresh_cancelled(site, owner)}/resume")
    elif action == "import":
        res = upload(client, site.sample, new_id())
    elif action == "cleanup":
        res = client.post("/api/v1/cleanup", {"dry_run": True})
    elif action == "verify":
        res = client.post("/api/v1/verify", {"job_ids": ["done-alice"]})
    assert res.status == expected, (who, action, res.body)
    if expected == 403:
        assert_error(res, 403, "PermissionDenied")


# --- Jobs ----------------------------------------------------------------------------------------

def test_submit_is_idempotent_and_answers_like_the_command_line(site):
    job_id = new_id()
    first = submit(site.alice, job_id=job_id, config={"seed": 3})
    assert first.status == 201
    assert first.json() == {"job_id": job_id, "created": True, "status": "pending"}
    again = submit(site.alice, job_id=job_id, config={"seed": 3})
    assert again.status == 200 and again.json()["created"] is False
    shown = site.reader.get(f"/api/v1/jobs/{job_id}").json()
    assert shown["created_by"] == "alice" and shown["config_json"] == {"seed": 3}
    # Same shape as `btstore --json show`.
    cli = site.bt.ok("show", job_id)
    assert set(shown) == set(cli)


def test_submit_refuses_bad_input_with_400(site):
    assert_error(submit(site.alice, start="2020-13-01"), 400, "InvalidArgument")
    assert_error(submit(site.alice, config=[1, 2]), 400, "InvalidArgument")
    assert_error(submit(site.alice, colour="red"), 400, "InvalidArgument")
    assert_error(submit(site.alice, job_id="../etc"), 400, "InvalidArgument")
    assert_error(site.alice.request("POST", "/api/v1/jobs", raw=b"{not json",
                                    content_type="application/json"), 400, "InvalidArgument")


def test_list_filters_and_cursor_pages(site):
    tag = "list_" + uuid.uuid4().hex[:6]
    ids = [submit(site.alice, alpha=tag).json()["job_id"] for _ in range(5)]
    submit(site.bob, alpha=tag)
    page = site.reader.get(f"/api/v1/jobs?alpha={tag}&user=alice&limit=2").json()
    seen = [j["job_id"] for j in page["jobs"]]
    while page["next"]:
        page = site.reader.get(f"/api/v1/jobs?alpha={tag}&user=alice&limit=2&after={page['next']}")
        page = page.json()
        seen += [j["job_id"] for j in page["jobs"]]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    both = site.reader.get(f"/api/v1/jobs?alpha={tag}&status=pending,running").json()["jobs"]
    assert len(both) == 6
    assert site.reader.get(f"/api/v1/jobs?alpha={tag}&status=completed").json()["jobs"] == []
    ranged = site.reader.get("/api/v1/jobs?created_from=2000-01-01&created_to=2000-01-02").json()
    assert ranged["jobs"] == []
    overlap = site.reader.get(f"/api/v1/jobs?alpha={tag}&from=2020-02-01&to=2020-02-02").json()
    assert len(overlap["jobs"]) == 6
    keys = {"job_id", "status", "alpha_name", "created_by", "start_date", "end_date", "created_at",
            "mean_ic", "icir", "hit_rate"}
    assert keys <= set(both[0])


@pytest.mark.parametrize("query", ["status=finished", "limit=abc", "created_from=yesterday",
                                   "colour=red", "after=garbage", "limit=1&limit=2"])
def test_list_refuses_bad_filters_with_400(site, query):
    assert_error(site.reader.get("/api/v1/jobs?" + query), 400, "InvalidArgument")


def test_unknown_job_is_404_and_a_bad_id_is_400(site):
    assert_error(site.reader.get("/api/v1/jobs/no-such-job"), 404, "JobNotFound")
    assert_error(site.reader.get("/api/v1/jobs/no-such-job/result"), 404, "JobNotFound")
    assert_error(site.admin.post("/api/v1/jobs/no-such-job/cancel"), 404, "JobNotFound")
    assert_error(site.reader.get("/api/v1/jobs/.hidden"), 400, "InvalidArgument")
    assert_error(site.reader.get("/api/v1/jobs/%2e%2e/tables/x"), 400, "InvalidArgument")


def test_moves_that_the_status_does_not_allow_are_409(site):
    assert_error(site.admin.post("/api/v1/jobs/done-alice/resume"), 409, "InvalidTransition")
    assert_error(site.admin.post("/api/v1/jobs/done-alice/cancel"), 409, "InvalidTransition")
    assert_error(site.reader.get("/api/v1/jobs/wait-alice/result"), 409, "ResultPathMissing")


def test_cancel_resume_and_pin_move_the_job(site):
    job_id = fresh_pending(site, "alice")
    assert site.alice.post(f"/api/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert site.alice.post(f"/api/v1/jobs/{job_id}/resume").json()["status"] == "pending"
    assert site.alice.post(f"/api/v1/jobs/{job_id}/pin").json()["pinned"] is True
    assert site.alice.post(f"/api/v1/jobs/{job_id}/pin", {"pinned": False}).json()["pinned"] is False
    assert_error(site.alice.post(f"/api/v1/jobs/{job_id}/pin", {"pinned": "yes"}), 400,
                 "InvalidArgument")


def test_result_summary_has_the_command_line_shape(site):
    doc = site.reader.get("/api/v1/jobs/done-alice/result").json()
    cli = site.bt.ok("result", "done-alice")
    for key in ("job_id", "mean_ic", "icir", "hit_rate", "snapshot_id", "dataset_version_ids"):
        assert doc[key] == cli[key]
    assert doc["tables"]["daily_signals"]["rows"] == 600
    part = site.reader.get("/api/v1/jobs/done-alice/result?from=2020-01-10&to=2020-01-20").json()
    assert 0 < part["tables"]["daily_ic"]["rows"] < 30
    assert_error(site.reader.get("/api/v1/jobs/done-alice/result?from=2020-02-01&to=2020-01-01"),
                 400, "InvalidArgument")


def test_a_corrupt_bundle_is_422(site):
    job_id = new_id()
    assert upload(site.admin, site.sample, job_id).status == 201
    path = site.reader.get(f"/api/v1/jobs/{job_id}").json()["result_path"]
    with open(f"{path}/daily_ic.parquet", "r+b") as f:
        f.seek(20)
        f.write(b"\xff" * 16)
    assert_error(site.reader.get(f"/api/v1/jobs/{job_id}/tables/daily_ic"), 422, "InvalidResult")
    (site.bt.root / job_id / "summary.json").write_text("{}")
    assert_error(site.reader.get(f"/api/v1/jobs/{job_id}/result"), 422,
                 "MissingReproducibilityMetadata")


# --- Tables --------------------------------------------------------------------------------------

def same_table(got, want):
    """Cell for cell, NaN equal to NaN and null to null (Table.equals has NaN != NaN)."""
    assert got.schema == want.schema
    for name in want.column_names:
        a, b = got.column(name), want.column(name)
        assert a.null_count == b.null_count
        def cells(column):
            return ["NaN" if isinstance(v, float) and math.isnan(v) else v
                    for v in column.to_pylist()]
        assert cells(a) == cells(b), name
    return True


def expected_table(name):
    """The table as btstore reads it: pyarrow's read of the file, with the columns that btstore
    stored REQUIRED (no nulls) marked nullable again as the file's metadata lists them."""
    table = pq.read_table(f"{SAMPLE_DIR[0]}/{name}.parquet")
    metadata = dict(table.schema.metadata or {})
    restored = json.loads(metadata.pop(b"btstore.nullable_columns", b"[]"))
    fields = [f.with_nullable(True) if i in restored else f for i, f in enumerate(table.schema)]
    return table.cast(pa.schema(fields, metadata=metadata or None))


SAMPLE_DIR = []


@pytest.fixture(autouse=True)
def _sample_dir(site):
    SAMPLE_DIR[:] = [str(site.sample)]


def test_arrow_stream_is_the_default_and_pyarrow_and_polars_read_it(site):
    res = site.reader.get("/api/v1/jobs/done-alice/tables/daily_signals")
    assert res.status == 200
    assert res.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    table = ipc.open_stream(res.body).read_all()
    assert same_table(table, expected_table("daily_signals"))
    frame = pl.read_ipc_stream(io.BytesIO(res.body))
    assert frame.shape == (600, 3) and frame.columns == ["date", "permno", "signal"]


def test_table_date_range_and_columns(site):
    res = site.reader.get("/api/v1/jobs/done-alice/tables/daily_signals"
                          "?from=2020-01-10&to=2020-01-20&columns=signal")
    table = ipc.open_stream(res.body).read_all()
    assert table.column_names == ["date", "signal"]
    dates = table.column("date").to_pylist()
    assert min(dates).isoformat() >= "2020-01-10" and max(dates).isoformat() <= "2020-01-20"


@pytest.mark.parametrize("codec", ["lz4", "zstd", "none"])
def test_compressed_arrow_streams_decode_to_the_same_table(site, codec):
    res = site.reader.get(f"/api/v1/jobs/done-alice/tables/daily_weights?compression={codec}")
    assert same_table(ipc.open_stream(res.body).read_all(), expected_table("daily_weights"))


def test_the_default_arrow_stream_has_lz4_buffers(site):
    """LZ4 buffers by default (the fastest way measured into pyarrow and polars, and fewer bytes
    on the wire); compression=none gives plain buffers to a reader without the codec."""
    path = "/api/v1/jobs/done-alice/tables/daily_signals"
    default = site.reader.get(path).body
    assert default == site.reader.get(path + "?compression=lz4").body
    plain = site.reader.get(path + "?compression=none").body
    assert len(default) < len(plain)
    assert same_table(ipc.open_stream(default).read_all(),
                      ipc.open_stream(plain).read_all())


def test_parquet_and_json_by_parameter_or_accept(site):
    res = site.reader.get("/api/v1/jobs/done-alice/tables/daily_ic?format=parquet")
    assert res.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert same_table(pq.read_table(io.BytesIO(res.body)), expected_table("daily_ic"))
    res = site.reader.get("/api/v1/jobs/done-alice/tables/daily_ic",
                          headers={"Accept": "application/json"})
    doc = res.json()
    assert doc["columns"] == ["date", "ic", "rank_ic"] and doc["rows"] == 30
    assert doc["data"]["date"][0] == expected_table("daily_ic").column("date")[0].as_py().isoformat()


@pytest.mark.parametrize("query,status,code", [
    ("format=csv", 400, "InvalidArgument"), ("compression=gzip", 400, "InvalidArgument"),
    ("from=someday", 400, "InvalidArgument")])
def test_bad_table_requests(site, query, status, code):
    assert_error(site.reader.get(f"/api/v1/jobs/done-alice/tables/daily_ic?{query}"), status, code)


@pytest.mark.parametrize("name", ["..", "daily_ic.parquet", ".daily_ic", "summary.json"])
def test_table_names_cannot_name_another_file(site, name):
    assert_error(site.reader.get(f"/api/v1/jobs/done-alice/tables/{name}"), 400, "InvalidArgument")


def test_a_missing_table_is_an_error_not_an_empty_stream(site):
    res = site.reader.get("/api/v1/jobs/done-alice/tables/daily_prices")
    assert res.status in (400, 422), res.body
    assert "error" in res.json()


def test_charts_and_compare_series(site):
    charts = site.reader.get("/api/v1/jobs/done-alice/charts").json()
    # Days without an IC (NaN) are null, and add nothing to the cumulative IC.
    ic = [None if v is None or math.isnan(v) else v
          for v in expected_table("daily_ic").column("ic").to_pylist()]
    assert charts["ic"] == ic
    assert charts["cumulative_ic"][-1] == pytest.approx(sum(v for v in ic if v is not None))
    assert len(charts["weights_dates"]) == len(charts["weights_names"]) > 0
    both = site.reader.get("/api/v1/compare/ic?ids=done-alice,done-bob").json()["series"]
    assert [s["job_id"] for s in both] == ["done-alice", "done-bob"]
    by_filter = site.reader.get("/api/v1/compare/ic?user=bob").json()["series"]
    assert [s["job_id"] for s in by_filter] == ["done-bob"]
    assert_error(site.reader.get("/api/v1/compare/ic?ids=wait-alice"), 409, "ResultPathMissing")


# --- Upload --------------------------------------------------------------------------------------

def bundle_dirs(site):
    return {p.name for p in site.bt.root.iterdir() if not p.name.startswith(".")}


def test_import_upload_creates_a_completed_job_once(site):
    job_id = new_id()
    res = upload(site.alice, site.sample, job_id)
    assert res.status == 201, res.body
    assert res.json()["status"] == "completed" and res.json()["created"] is True
    again = upload(site.alice, site.sample, job_id)
    assert again.status == 200 and again.json()["created"] is False
    table = ipc.open_stream(site.reader.get(f"/api/v1/jobs/{job_id}/tables/daily_ic").body)
    assert same_table(table.read_all(), expected_table("daily_ic"))


def test_an_invalid_upload_writes_nothing(site, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in site.sample.iterdir():
        if f.name != "summary.json":
            (broken / f.name).write_bytes(f.read_bytes())
    before = bundle_dirs(site)
    job_id = new_id()
    assert_error(upload(site.alice, broken, job_id), 422, "MissingReproducibilityMetadata")
    assert_error(site.reader.get(f"/api/v1/jobs/{job_id}"), 404, "JobNotFound")
    assert bundle_dirs(site) == before


@pytest.mark.parametrize("bad_name", ["../daily_ic.parquet", ".hidden.parquet", "a/b.parquet",
                                      "notes.txt"])
def test_upload_file_names_cannot_name_a_path(site, bad_name):
    job_id = new_id()
    res = upload(site.alice, site.sample, job_id, names={"daily_ic.parquet": bad_name})
    assert_error(res, 400, "InvalidArgument")
    assert_error(site.reader.get(f"/api/v1/jobs/{job_id}"), 404, "JobNotFound")


def test_upload_must_be_multipart(site):
    assert_error(site.alice.post("/api/v1/import", {"alpha": "x"}), 400, "InvalidArgument")


# --- Maintenance ---------------------------------------------------------------------------------

def test_cleanup_and_verify_answer_like_the_command_line(site):
    doc = site.admin.post("/api/v1/cleanup", {"retention_days": 0, "dry_run": True}).json()
    assert doc["dry_run"] is True and doc["removed"] >= 2 and "done-alice" in doc["job_ids"]
    assert site.reader.get("/api/v1/jobs/done-alice").status == 200
    assert_error(site.admin.post("/api/v1/cleanup", {"retention_days": -1}), 400, "InvalidArgument")
    report = site.admin.post("/api/v1/verify", {"job_ids": ["done-alice", "done-bob"]}).json()
    assert report == {"checked": 2, "ok": True, "problems": []}
    assert_error(site.admin.post("/api/v1/verify", {"job_ids": ["no-such-job"]}), 404,
                 "JobNotFound")
    text = site.anon.get("/metrics").body.decode()
    assert "btstore_verify_last_checked 2" in text


def test_access_log_has_one_json_line_per_request(site):
    site.reader.get("/api/v1/jobs/done-alice?secret=1")
    lines = site.server.access_log()
    line = [l for l in lines if l["path"] == "/api/v1/jobs/done-alice"][-1]
    assert line["route"] == "show_job" and line["status"] == 200 and line["user"] == "rita"
    assert line["ms"] >= 0 and "secret" not in json.dumps(line)
