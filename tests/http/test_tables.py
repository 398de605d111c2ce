"""Tables over HTTP as a process sees them: a large table streams in bounded server memory, a
stored file that no longer matches its checksum ends the stream with an error instead of an
end, and an internal error is a 500 envelope that gives nothing away while the server serves on."""

import http.client
import json
import os
import re
import subprocess
import urllib.parse
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from btstore_testing import wait_until
from conftest import Btstore, Server

# 64 row groups of btstore's 65,536 rows: 4.2M rows, 84 MB decoded, 46 MB of Parquet.
DAYS, NAMES = 1400, 3000
DECODED_BYTES = DAYS * NAMES * (4 + 8 + 8)
# What the server may add to its peak resident memory while it streams that table: its step of
# row groups, compressed and decoded, the encoded batch and the allocator's per-thread caches.
# Reading the table whole (as before) adds the decoded table and the file's bytes, above 120 MB.
GROWTH_BOUND_BYTES = 48 << 20


def bench_bin():
    path = Path(os.environ.get("BTSTORE_BINARY_DIR", "build")) / "bench" / "btstore_bench"
    if not path.exists():
        pytest.fail(f"{path} is not built (ninja btstore_bench)")
    return path


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A store holding the large result as job `large`, and a reader's token."""
    tmp = tmp_path_factory.mktemp("tables")
    bt = Btstore(f"sqlite:{tmp / 'catalog.db'}", tmp / "results")
    subprocess.run([bench_bin(), "gen", "--out", tmp / "bundle", "--days", str(DAYS),
                    "--symbols", str(NAMES)], check=True, capture_output=True)
    bt.ok("import", tmp / "bundle", "--alpha", "large", "--start", "2010-01-01", "--end",
          "2015-12-31", "--job-id", "large")
    return bt, bt.token("reader", "reader")


def peak_kib(pid):
    return int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))


def get(base, token, path):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    return conn, conn.getresponse()


def test_a_large_table_streams_in_bounded_server_memory(large):
    bt, token = large
    server = Server(bt)
    try:
        # A first small read brings in what any read needs (Arrow's threads, codecs).
        conn, res = get(server.base, token, "/api/v1/jobs/large/tables/daily_ic")
        assert res.status == 200
        ipc.open_stream(res.read()).read_all()
        conn.close()
        before = peak_kib(server.proc.pid) * 1024
        conn, res = get(server.base, token, "/api/v1/jobs/large/tables/daily_signals")
        assert res.status == 200
        table = ipc.open_stream(res).read_all()
        conn.close()
        growth = peak_kib(server.proc.pid) * 1024 - before
        stored = pq.read_table(bt.root / "large" / "daily_signals.parquet")
        assert table.num_rows == DAYS * NAMES and table.nbytes == DECODED_BYTES
        # Bit for bit: NaN is among the signals, and NaN equals nothing as a float.
        for name in ("date", "permno"):
            assert table[name].equals(stored[name])
        bits = [t["signal"].combine_chunks().view(pa.int64()) for t in (table, stored)]
        assert bits[0].equals(bits[1])
        assert growth < GROWTH_BOUND_BYTES, (growth, DECODED_BYTES)
    finally:
        assert server.stop() == 0


def corrupt_footer(path):
    """Change one letter of the writer's name in the file's footer: the file still decodes, to
    the same table, but its bytes no longer match the manifest's checksum."""
    data = bytearray(path.read_bytes())
    at = data.rindex(b"parquet-cpp-arrow")
    data[at] = ord("P")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("query", ["", "?format=parquet", "?format=json"])
def test_a_checksum_mismatch_found_at_the_end_breaks_the_stream(tmp_path, query):
    bt = Btstore(f"sqlite:{tmp_path / 'catalog.db'}", tmp_path / "results")
    # 300,000 rows: several steps of the server's reader (a table of one step is checked whole
    # before the answer starts, and is a 422 like any other corrupt file).
    subprocess.run([bench_bin(), "gen", "--out", tmp_path / "bundle", "--days", "150",
                    "--symbols", "2000"], check=True, capture_output=True)
    bt.ok("import", tmp_path / "bundle", "--alpha", "a", "--start", "2010-01-01", "--end",
          "2010-12-31", "--job-id", "bad")
    corrupt_footer(bt.root / "bad" / "daily_signals.parquet")
    token = bt.token("reader", "reader")
    server = Server(bt)
    try:
        conn, res = get(server.base, token, "/api/v1/jobs/bad/tables/daily_signals" + query)
        # The file's size, schema and rows match: the answer starts, and only its end can tell.
        assert res.status == 200
        assert res.getheader("Transfer-Encoding") == "chunked"
        with pytest.raises(http.client.IncompleteRead) as broken:
            res.read()
        conn.close()
        assert len(broken.value.partial) > 0
        # The whole-file read says why, as ever.
        result = server.client(token).get("/api/v1/jobs/bad/result")
        assert result.status == 422 and "checksum mismatch" in result.json()["error"]["message"]
        assert server.client().get("/healthz").status == 200
    finally:
        assert server.stop() == 0


def test_an_internal_error_is_a_500_envelope_without_internals_and_the_server_serves_on(tmp_path):
    bt = Btstore(f"sqlite:{tmp_path / 'catalog.db'}", tmp_path / "results")
    bt.ok("bundle", "sample", tmp_path / "bundle", "--days", "20", "--symbols", "10")
    token = bt.token("alice", "submitter")
    # Uploads go through a temporary directory: with TMPDIR naming no directory, making one
    # fails inside the server (the standard library's filesystem error), a real internal fault.
    missing_tmp = tmp_path / "no-such-tmp"
    env = dict(os.environ, TMPDIR=str(missing_tmp))
    server = Server(bt, env=env)
    try:
        files = [(p.name, p.read_bytes()) for p in sorted((tmp_path / "bundle").iterdir())]
        boundary = "btstoreboundary"
        body = b""
        for name, value in (("alpha", b"a"), ("start", b"2020-01-01"), ("end", b"2020-02-01")):
            body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                     .encode() + value + b"\r\n")
        for name, content in files:
            body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                     f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                     .encode() + content + b"\r\n")
        body += f"--{boundary}--\r\n".encode()
        client = server.client(token)
        res = client.request("POST", "/api/v1/import", raw=body,
                             content_type=f"multipart/form-data; boundary={boundary}")
        assert res.status == 500
        error = res.json()["error"]
        assert error["code"] == "Internal" and error["details"] == {}
        text = res.body.decode()
        for secret in (token, str(missing_tmp), "filesystem", str(bt.root), "Traceback", ".cc:"):
            assert secret not in text
        # The operator finds what happened in the server's log, on the request's line.
        # (The line is written once the answer is sent.)
        line = wait_until(lambda: [l for l in server.access_log() if l["route"] == "import"],
                          "the import is logged")[-1]
        assert line["status"] == 500 and "temp_directory_path" in line["error"]
        # The server serves on: the next requests are answered.
        assert server.client().get("/healthz").status == 200
        assert client.get("/api/v1/jobs").status == 200
        assert bt.ok("list")["jobs"] == []
    finally:
        assert server.stop() == 0
