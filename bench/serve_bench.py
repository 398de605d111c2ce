"""Benchmark `btstore serve` over loopback: wrk with 64 connections on the job list and on one
job's summary, and the large signals table as an Arrow stream (plain, LZ4, ZSTD) and as a Parquet
download, decoded by pyarrow. Prints figures as JSON lines; asserts nothing.

    .venv/bin/python bench/serve_bench.py [--quick] [--build-dir build] [--seconds S] [--threads N]

--quick: 5 s per wrk run and a 1,000-day x 3,000-name result (3M signal rows) instead of the
full 2,520 x 3,000 (7.56M rows). Needs `wrk` (Debian package).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import io


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


def fetch(base, token, path):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    return conn, conn.getresponse()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--threads", type=int, default=32, help="serve --threads")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    seconds = args.seconds or (5 if args.quick else 30)
    days, names = (1000, 3000) if args.quick else (2520, 3000)
    binary = os.path.abspath(os.path.join(args.build_dir, "btstore"))
    work = tempfile.mkdtemp(prefix="btstore-serve-bench-")
    base_argv = [binary, "--catalog", f"sqlite:{work}/catalog.db", "--artifact-root",
                 f"{work}/results", "--json"]
    try:
        run(base_argv + ["bundle", "sample", f"{work}/large", "--days", str(days), "--symbols",
                         str(names)])
        run(base_argv + ["import", f"{work}/large", "--alpha", "large", "--start", "2010-01-01",
                         "--end", "2019-12-31", "--job-id", "large"])
        for i in range(100):
            run(base_argv + ["submit", "--alpha", f"a{i % 7}", "--start", "2020-01-01", "--end",
                             "2020-12-31", "--user", f"u{i % 5}", "--job-id", f"j{i}"])
        token = run(base_argv + ["token", "create", "--user", "bench", "--role", "reader"])["token"]
        server = subprocess.Popen(base_argv[:-1] + ["serve", "--listen", "127.0.0.1:0",
                                                   "--threads", str(args.threads)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        text = ""
        while not text.rstrip().endswith("}"):
            text += server.stdout.readline()
        base = json.loads(text)["listening"]
        print(json.dumps({"case": "server_rss_start_kib", **rss_kib(server.pid)}))
        for name, path in (("list_jobs_limit_20", "/api/v1/jobs?limit=20"),
                           ("job_summary", "/api/v1/jobs/large")):
            print(json.dumps({"case": name, "connections": 64, "seconds": seconds,
                              **wrk(base + path, token, seconds)}), flush=True)
        for label, query in (("arrow", ""), ("arrow_lz4", "?compression=lz4"),
                             ("arrow_zstd", "?compression=zstd"), ("parquet", "?format=parquet")):
            start = time.perf_counter()
            conn, res = fetch(base, token, "/api/v1/jobs/large/tables/daily_signals" + query)
            if label == "parquet":
                table = pq.read_table(io.BytesIO(res.read()))
            else:
                table = ipc.open_stream(res).read_all()
            elapsed = time.perf_counter() - start
            conn.close()
            print(json.dumps({"case": f"signals_{label}", "rows": table.num_rows,
                              "decoded_bytes": table.nbytes, "seconds": round(elapsed, 3),
                              "decoded_gb_per_s": round(table.nbytes / elapsed / 1e9, 3),
                              "server": rss_kib(server.pid)}), flush=True)
        server.terminate()
        server.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
