"""Soak `btstore serve`: N minutes of mixed reads and submits through the API while a worker runs
the submitted jobs and cleanup removes the finished ones, then check that nothing was lost and
report the server's memory at the start and the end. Not part of ctest (it runs for minutes).

    .venv/bin/python bench/serve_soak.py [--minutes 10] [--build-dir build] [--readers 2]

What runs at once, all against one server over a fresh SQLite catalog:
- readers: the job list (with filters and a cursor), one job, its result, its charts and a table
  (Arrow stream) of ten completed jobs kept pinned for reading; every answer must be a 200;
- a submitter: one job a second, each pinned at once so that cleanup leaves it alone;
- a checker: a submitted job that shows `completed` has its result read (it must be a 200), is
  counted as done and unpinned, which makes it expired for cleanup;
- `btstore worker` (a separate process) running the jobs;
- cleanup with a retention of 0 days through the API every 10 s, removing what was unpinned.
At the end it waits for the last submitted jobs, runs a last cleanup and checks: every
submitted job completed and was read, every read succeeded, cleanup removed exactly the jobs
that were done (and only those), and the reading set is intact. Prints JSON lines: a line a
minute (the server's VmRSS, counts), then the summary; exits 1 when something was lost.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

CONFIG = {"symbols": 50}
START, END = "2020-01-01", "2020-06-30"


def rss_kib(pid):
    status = open(f"/proc/{pid}/status").read()
    return {k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) for k in ("VmRSS", "VmHWM")}


class Api:
    """One kept-alive connection per thread."""

    def __init__(self, base, token):
        url = urllib.parse.urlparse(base)
        self.host, self.port, self.token = url.hostname, url.port, token
        self.local = threading.local()

    def call(self, method, path, body=None):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            return res.status, res.read()
        except (OSError, http.client.HTTPException):
            # The server may close an idle kept-alive connection; one retry on a new one.
            conn.close()
            self.local.conn = None
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            return res.status, res.read()


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.reads = 0
        self.read_failures = []
        self.submitted = []
        self.done = set()
        self.removed = set()
        self.errors = []

    def fail(self, what):
        with self.lock:
            self.read_failures.append(what)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--readers", type=int, default=2)
    args = parser.parse_args()
    binary = os.path.abspath(os.path.join(args.build_dir, "btstore"))
    work = tempfile.mkdtemp(prefix="btstore-serve-soak-")
    base_argv = [binary, "--catalog", f"sqlite:{work}/catalog.db", "--artifact-root",
                 f"{work}/results", "--json"]

    def cli(*argv):
        return json.loads(subprocess.run(base_argv + list(argv), check=True, capture_output=True,
                                         text=True).stdout)

    procs = []
    tally = Tally()
    stop = threading.Event()
    try:
        reading = []
        for i in range(10):
            reading.append(cli("submit", "--alpha", f"read{i % 3}", "--start", START, "--end", END,
                               "--config", json.dumps(CONFIG), "--user", "reader",
                               "--job-id", f"read-{i}")["job_id"])
        cli("worker", "--until-idle")
        for job_id in reading:
            cli("pin", job_id)
        token = cli("token", "create", "--user", "soak", "--role", "admin")["token"]
        server = subprocess.Popen(base_argv[:-1] + ["serve", "--listen", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(server)
        text = ""
        while not text.rstrip().endswith("}"):
            text += server.stdout.readline()
        api = Api(json.loads(text)["listening"], token)
        worker = subprocess.Popen(base_argv[:-1] + ["worker", "--concurrency", "2"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(worker)

        def read_once(rng):
            job_id = rng.choice(reading)
            path = rng.choice([
                "/api/v1/jobs?limit=20",
                f"/api/v1/jobs?alpha=read{rng.randrange(3)}&status=completed&limit=5",
                f"/api/v1/jobs/{job_id}",
                f"/api/v1/jobs/{job_id}/result",
                f"/api/v1/jobs/{job_id}/charts",
                f"/api/v1/jobs/{job_id}/tables/daily_signals",
                f"/api/v1/jobs/{job_id}/tables/daily_ic?format=json",
            ])
            status, body = api.call("GET", path)
            if status != 200:
                tally.fail(f"{path}: {status} {body[:200]!r}")
            elif path.endswith("limit=20"):
                # Follow the cursor one page.
                nxt = json.loads(body)["next"]
                if nxt:
                    status, body = api.call("GET", f"/api/v1/jobs?limit=20&after={nxt}")
                    if status != 200:
                        tally.fail(f"next page: {status} {body[:200]!r}")
            with tally.lock:
                tally.reads += 1

        def reader(seed):
            rng = random.Random(seed)
            while not stop.is_set():
                read_once(rng)
                time.sleep(0.01)

        def submitter():
            n = 0
            while not stop.is_set():
                job_id = f"soak-{n}"
                status, body = api.call("POST", "/api/v1/jobs", {
                    "alpha": f"soak{n % 4}", "start": START, "end": END, "config": CONFIG,
                    "job_id": job_id})
                if status != 201:
                    tally.errors.append(f"submit {job_id}: {status} {body[:200]!r}")
                else:
                    status, body = api.call("POST", f"/api/v1/jobs/{job_id}/pin", {"pinned": True})
                    if status != 200:
                        tally.errors.append(f"pin {job_id}: {status} {body[:200]!r}")
                    with tally.lock:
                        tally.submitted.append(job_id)
                n += 1
                stop.wait(1.0)

        def check_pending():
            with tally.lock:
                waiting = [j for j in tally.submitted if j not in tally.done]
            for job_id in waiting:
                status, body = api.call("GET", f"/api/v1/jobs/{job_id}")
                if status != 200:
                    tally.errors.append(f"show {job_id}: {status} {body[:200]!r}")
                    continue
                job_status = json.loads(body)["status"]
                if job_status in ("failed", "cancelled"):
                    tally.errors.append(f"{job_id} ended {job_status}")
                    with tally.lock:
                        tally.done.add(job_id)
                if job_status != "completed":
                    continue
                status, body = api.call("GET", f"/api/v1/jobs/{job_id}/result")
                if status != 200:
                    tally.errors.append(f"result {job_id}: {status} {body[:200]!r}")
                status, body = api.call("POST", f"/api/v1/jobs/{job_id}/pin", {"pinned": False})
                if status != 200:
                    tally.errors.append(f"unpin {job_id}: {status} {body[:200]!r}")
                with tally.lock:
                    tally.done.add(job_id)

        def cleanup_once():
            status, body = api.call("POST", "/api/v1/cleanup", {"retention_days": 0})
            if status != 200:
                tally.errors.append(f"cleanup: {status} {body[:200]!r}")
                return
            with tally.lock:
                tally.removed.update(json.loads(body)["job_ids"])

        def checker():
            last_cleanup = time.monotonic()
            while not stop.is_set():
                check_pending()
                if time.monotonic() - last_cleanup >= 10:
                    cleanup_once()
                    last_cleanup = time.monotonic()
                stop.wait(0.5)

        # Warm the server up, then take its memory as the start.
        rng = random.Random(0)
        for _ in range(200):
            read_once(rng)
        start_rss = rss_kib(server.pid)
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(args.readers)]
        threads += [threading.Thread(target=submitter), threading.Thread(target=checker)]
        for t in threads:
            t.start()
        began = time.monotonic()
        deadline = began + args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(min(60, max(0, deadline - time.monotonic())))
            with tally.lock:
                print(json.dumps({"minute": round((time.monotonic() - began) / 60, 1),
                                  "server_kib": rss_kib(server.pid), "reads": tally.reads,
                                  "read_failures": len(tally.read_failures),
                                  "submitted": len(tally.submitted), "done": len(tally.done),
                                  "removed": len(tally.removed), "errors": len(tally.errors)}),
                      flush=True)
        stop.set()
        for t in threads:
            t.join()
        end_rss = rss_kib(server.pid)
        # The last submitted jobs: wait for them (the worker keeps running), then clean up.
        settle = time.monotonic() + 120
        while time.monotonic() < settle and len(tally.done) < len(tally.submitted):
            check_pending()
            time.sleep(0.5)
        cleanup_once()
        status, body = api.call("GET", "/api/v1/jobs?limit=100")
        remaining = {j["job_id"] for j in json.loads(body)["jobs"]}
        submitted = set(tally.submitted)
        lost = sorted(submitted - tally.done)
        summary = {
            "minutes": args.minutes, "reads": tally.reads,
            "read_failures": tally.read_failures[:10], "submitted": len(submitted),
            "completed_and_read": len(tally.done), "not_completed": lost[:10],
            "removed_by_cleanup": len(tally.removed & submitted),
            "removed_not_done": sorted(tally.removed - tally.done)[:10],
            "left_after_cleanup": sorted((remaining & submitted))[:10],
            "reading_set_intact": set(reading) <= remaining,
            "errors": tally.errors[:10],
            "server_rss_start_kib": start_rss["VmRSS"], "server_rss_end_kib": end_rss["VmRSS"],
            "server_peak_kib": end_rss["VmHWM"], "load_1m": os.getloadavg()[0]}
        ok = (not tally.read_failures and not lost and not tally.errors
              and tally.removed & submitted == tally.done and not remaining & submitted
              and summary["reading_set_intact"])
        summary["nothing_lost"] = ok
        print(json.dumps(summary), flush=True)
        return 0 if ok else 1
    finally:
        stop.set()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
