"""Benchmark `btstore serve` over loopback: wrk with 64 connections on the job list and on one
job's summary, alone and with 1,000 idle kept-alive connections open beside them; and the large
signals table (7.56M rows) fetched the three ways a client without the files can get it (an
Arrow stream with plain buffers, with LZ4 buffers (the server's default) or ZSTD buffers, the
Parquet file) into pyarrow and
polars, with the server's peak memory. Prints figures as JSON lines; asserts nothing.

    .venv/bin/python bench/serve_bench.py [--quick] [--build-dir build] [--seconds S]
                                          [--repeat N] [--only wrk|tables]

--quick: 5 s per wrk run and a 1,000-day x 3,000-name result (3M signal rows) instead of the
full 2,520 x 3,000 (7.56M rows). Each table case runs on a fresh server (its peak resident
memory, VmHWM, is the case's), N times (--repeat, default 3), in turn, so that the machine's
load falls on every case alike; the table is fetched twice and the second fetch is timed (the
first, reported as first_seconds, pays the fresh process's page faults). Needs `wrk` (Debian package).
"""

import argparse
import http.client
import io
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import polars as pl
import pyarrow.ipc as ipc
import pyarrow.parquet as pq


def run(argv):
    return json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


def wrk(url, token, seconds, connections=64):
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-H", f"Authorization: Bearer {token}", url],
                         check=True, capture_output=True, text=True).stdout

    def latency(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"requests_per_s": rps, "p50_ms": latency("50"), "p99_ms": latency("99"),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else None}


def rss_kib(pid):
    status = open(f"/proc/{pid}/status").read()
    return {k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) for k in ("VmRSS", "VmHWM")}


def load():
    return os.getloadavg()[0]


class Serve:
    """`btstore serve` on a free loopback port."""

    def __init__(self, base_argv, *extra):
        self.proc = subprocess.Popen(base_argv[:-1] + ["serve", "--listen", "127.0.0.1:0", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        text = ""
        while not text.rstrip().endswith("}"):
            text += self.proc.stdout.readline()
        self.base = json.loads(text)["listening"]
        url = urllib.parse.urlparse(self.base)
        self.host, self.port = url.hostname, url.port

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=120)


def open_idle(server, count):
    """`count` kept-alive connections, each after one answered request, left idle."""
    conns = []
    for _ in range(count):
        s = socket.create_connection((server.host, server.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
        conns.append(s)
    for s in conns:
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            data += s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
    return conns


def fetch(server, token, path):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=600)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    res = conn.getresponse()
    assert res.status == 200, res.status
    return conn, res


def table_case(server, token, label, query, client):
    """Fetch the table twice on `server` and time the second fetch (the first, timed as
    first_seconds, is the server's first answer since it started: it pays the page faults of the
    process's fresh memory, which a running server has behind it)."""
    first = time.perf_counter()
    conn, res = fetch(server, token, "/api/v1/jobs/large/tables/daily_signals" + query)
    ipc.open_stream(res).read_all() if label != "parquet" else res.read()
    first_seconds = time.perf_counter() - first
    conn.close()
    start = time.perf_counter()
    conn, res = fetch(server, token, "/api/v1/jobs/large/tables/daily_signals" + query)
    if label == "parquet":
        body = io.BytesIO(res.read())
        frame = pq.read_table(body) if client == "pyarrow" else pl.read_parquet(body)
    elif client == "pyarrow":
        frame = ipc.open_stream(res).read_all()
    else:
        frame = pl.read_ipc_stream(io.BytesIO(res.read()))
    elapsed = time.perf_counter() - start
    conn.close()
    rows = frame.num_rows if client == "pyarrow" else frame.height
    decoded = frame.nbytes if client == "pyarrow" else frame.estimated_size()
    return {"rows": rows, "decoded_bytes": decoded, "seconds": round(elapsed, 3),
            "decoded_gb_per_s": round(decoded / elapsed / 1e9, 3),
            "first_seconds": round(first_seconds, 3)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["wrk", "tables"])
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 idle sockets, both sides
    seconds = args.seconds or (5 if args.quick else 30)
    days, names = (1000, 3000) if args.quick else (2520, 3000)
    binary = os.path.abspath(os.path.join(args.build_dir, "btstore"))
    bench = os.path.abspath(os.path.join(args.build_dir, "bench", "btstore_bench"))
    work = tempfile.mkdtemp(prefix="btstore-serve-bench-")
    base_argv = [binary, "--catalog", f"sqlite:{work}/catalog.db", "--artifact-root",
                 f"{work}/results", "--json"]
    try:
        subprocess.run([bench, "gen", "--out", f"{work}/large", "--days", str(days),
                        "--symbols", str(names)], check=True, capture_output=True)
        run(base_argv + ["import", f"{work}/large", "--alpha", "large", "--start", "2010-01-01",
                         "--end", "2019-12-31", "--job-id", "large"])
        for i in range(100):
            run(base_argv + ["submit", "--alpha", f"a{i % 7}", "--start", "2020-01-01", "--end",
                             "2020-12-31", "--user", f"u{i % 5}", "--job-id", f"j{i}"])
        token = run(base_argv + ["token", "create", "--user", "bench", "--role", "reader"])["token"]

        if args.only in (None, "wrk"):
            server = Serve(base_argv, "--keep-alive-seconds", str(seconds * 4 + 60))
            print(json.dumps({"case": "server_rss_start_kib", **rss_kib(server.proc.pid)}))
            for idle_count in (0, 1000):
                idle = open_idle(server, idle_count)
                for name, path in (("list_jobs_limit_20", "/api/v1/jobs?limit=20"),
                                   ("job_summary", "/api/v1/jobs/large")):
                    print(json.dumps({"case": name, "connections": 64, "idle_connections":
                                      idle_count, "seconds": seconds, "load_1m": load(),
                                      **wrk(server.base + path, token, seconds),
                                      "server_kib": rss_kib(server.proc.pid)}), flush=True)
                for s in idle:
                    s.close()
            server.stop()

        if args.only in (None, "tables"):
            ways = (("arrow", "?compression=none"), ("arrow_lz4", "?compression=lz4"),
                    ("arrow_zstd", "?compression=zstd"), ("parquet", "?format=parquet"))
            for round_ in range(args.repeat):
                for label, query in ways:
                    for client in ("pyarrow", "polars"):
                        server = Serve(base_argv)
                        figures = table_case(server, token, label, query, client)
                        print(json.dumps({"case": f"signals_{label}", "client": client,
                                          "round": round_, "load_1m": load(), **figures,
                                          "server_kib": rss_kib(server.proc.pid)}), flush=True)
                        server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
