"""Run btstore's benchmarks side by side with the peer tools and print medians and ratios.

Started by scripts/bench.sh (which sets up and builds first); run directly with the venv's
python:

    .venv/bin/python bench/run_bench.py [--quick] [--json-out FILE] [--cases 1,2,...]
                                        [--build-dir build] [--work-dir DIR] [--keep]

Every measurement runs in a fresh process (build/bench/btstore_bench for btstore and raw Arrow
C++, bench/peers.py for pyarrow and polars); each prints one JSON object. This driver repeats
them, takes medians, computes ratio_vs_btstore = median(tool) / median(btstore) (above 1: btstore
is faster), checks each case's target, prints tables and optionally writes every row as JSON.
After each case it prints the case's time and what limits it, from one extra, untimed run of the
case's btstore command under perf (bench/limiter.py), and at the end every case's time and the
run's against its budget (--quick 2 minutes, full 15 minutes).

Cases (see docs/PERFORMANCE.md): 1 write a bundle, 2 read a whole bundle, 3 read one month,
4 list_jobs on a large catalog, 5 retention, 6 lifecycle throughput and cancel latency,
7 memory of cases 1-3, 8 command engine overhead over an in-process engine, 9 the Python
package (get_result into polars, ic_panel, list_jobs from Python; bench/python_bench.py), 10
bundles on S3 (a private moto server on loopback: write, whole read and one month, vs pyarrow and
polars on the same server). Cases 4-6 start a private PostgreSQL cluster (initdb/pg_ctl in a
temporary directory, as the `postgres` user when run as root) and use SQLite files.
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
from btstore_testing import FaultProxy, PgCluster, PgClusterError, S3Server  # noqa: E402
import limiter  # noqa: E402  (bench/limiter.py: what limits each case)
MIB = 1024 * 1024

# Result shapes: (name, trading days, permnos). The first one of a mode spans ten years and is
# the one read by month (case 3).
DATASETS = {
    "full": [("large", 2520, 3000), ("small", 252, 500)],
    "quick": [("medium", 2520, 300)],
}
MONTH = ("2015-06-01", "2015-06-30")  # one month out of 2010-01-04 .. 2019-12-31
# Cases 1 and 2 (round two): btstore's margin over the faster peer, and at most this much
# slower than a raw Arrow C++ write of the same files.
SPEEDUP = 1.15
# The whole run's time goals (issue 14 item 5), on 2 cores.
QUICK_BUDGET_S = 120
FULL_BUDGET_S = 15 * 60
# A case's profile run records at most this long (perf then ends the command), so that a slow
# command (retention, lifecycle on a busy disk) cannot stretch the run.
PROFILE_RECORD_S = 20


class Settings:
    def __init__(self, quick):
        self.quick = quick
        self.mode = "quick" if quick else "full"
        self.datasets = DATASETS[self.mode]
        # Repetitions of one measurement (each a fresh process), per dataset size. The large
        # write moves by +-15% between fresh processes on this virtual machine (page faults, the
        # disk's flushes), and its target is a ratio of 1.15: nine runs in the full run.
        self.repeats = {"large": 5 if quick else 9, "small": 7, "medium": 3}
        # Case 10 moves the large result through a Python S3 server about ten times per
        # repetition (about 15 s), and case 9's ic_panel reads 1,000 files per run: three runs
        # in --quick, five in the full run (btstore's and polars' S3 writes are within 10% of
        # each other, bound by the server, as are the panel's warm and cold figures).
        self.s3_repeats = 3 if quick else 5
        self.ic_panel_repeats = 3 if quick else 5
        # Case 9's get_result puts ~300 MB of freshly faulted memory in each process: on this
        # virtual machine one run of the same read takes 55-365 ms (page zeroing, 70-78% of its
        # samples), so a target of 1.1x between two tools needs more runs than 5 for its median.
        self.get_result_repeats = 3 if quick else 11
        # Making the jobs is most of case 9's time in --quick (each import flushes its bundle).
        self.ic_panel_jobs = 100 if quick else 1000
        self.catalog_rows = 100_000 if quick else 1_000_000
        self.list_iterations = 20 if quick else 100
        self.retention_jobs = 5_000 if quick else 100_000
        # Retention is stopped (SIGKILL, which it must survive) when it overruns its target of
        # 60 s; the rate so far gives the projected time. --quick stops it sooner.
        self.retention_budget_s = 10 if quick else 60
        # Making 100,000 bundle directories takes minutes on a busy disk: the full run measures
        # PostgreSQL (the backend for teams) only.
        self.retention_backends = ("sqlite",) if quick else ("postgresql",)
        # The throughput figure is a rate over all jobs of a run; one run per backend.
        self.throughput_jobs = 60 if quick else 600
        # Rounds of the ceiling and the tuned workers, in alternation.
        self.throughput_rounds = 1 if quick else 3
        # The tuned configuration: jobs in flight per worker (claimed in batches of up to that
        # many, completed in group commits) and concurrent submitting clients.
        self.throughput_concurrency = 16
        self.throughput_submitters = 8
        # The ceiling's loops: one job at a time (serial), and as many at once as the tuned
        # workers have in flight; the queue alone runs on more jobs (it is much faster).
        self.ceiling_jobs = 30 if quick else 100
        self.queue_jobs = 200 if quick else 1000
        self.cancel_samples = 3 if quick else 15


# ---------------------------------------------------------------------------------------------
# Processes


class StepFailed(RuntimeError):
    pass


def evict_page_cache(paths):
    """Drop the page cache's copy of every file under `paths` (POSIX_FADV_DONTNEED on each,
    after an fsync so no page is dirty): the next read of them comes from the disk, as after a
    reboot, without dropping the whole machine's cache. Returns the bytes evicted."""
    total = 0
    for top in paths:
        for dirpath, _, names in os.walk(top) if os.path.isdir(top) else [("", [], [top])]:
            for name in names:
                path = os.path.join(dirpath, name)
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    total += os.fstat(fd).st_size
                finally:
                    os.close(fd)
    return total


def remove_tree(path):
    # rm is several times faster than shutil.rmtree on 100,000 directories.
    subprocess.run(["rm", "-rf", "--", path], check=False)


def run_json_rusage(cmd, timeout=None):
    """Run one measurement process; return its JSON (last stdout line) and its peak RSS.

    With `timeout` (seconds), kill the process when it runs longer and return
    {"timed_out": True, "lines": [the JSON lines it printed so far]}.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        # wait4 reaps the child and gives its own resource usage (ru_maxrss: its peak RSS).
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, 0 if deadline is None else os.WNOHANG)
            if pid != 0:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                out.seek(0)
                lines = [json.loads(line) for line in out.read().decode().splitlines()
                         if line.startswith("{")]
                return {"timed_out": True, "lines": lines}
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise StepFailed(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-3000:]}")
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise StepFailed(f"{' '.join(cmd)} printed nothing:\n{stderr[-3000:]}")
    facts = json.loads(lines[-1])
    facts["process_peak_rss_mb"] = usage.ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux
    return facts


class Bench:
    """Runs the measurement processes, and per case one extra, untimed profile run of the case's
    btstore command (the first one a case marks with profile=True or names with want_profile),
    which tells what limits the case (bench/limiter.py)."""

    def __init__(self, build_dir):
        self.build_dir = build_dir
        self.limiter = None  # set by start_profiling once the scratch directory exists
        self.target = None
        self.limits_line = None
        self.profile_s = 0.0
        self.exe = os.path.join(build_dir, "bench", "btstore_bench")
        if not os.access(self.exe, os.X_OK):
            sys.exit(f"run_bench: {self.exe} not found; build the target btstore_bench first")
        self.peers = [sys.executable, os.path.join(HERE, "peers.py")]
        self.python = [sys.executable, os.path.join(HERE, "python_bench.py")]
        # python_bench.py imports the package from the build tree, as the tests do.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.path.join(build_dir, "python"), os.environ.get("PYTHONPATH")) if p)

    def cpp(self, *args, timeout=None, profile=False):
        return self._run([self.exe, *map(str, args)], timeout, profile)

    def peer(self, *args):
        return run_json_rusage([*self.peers, *map(str, args)])

    def py(self, *args, profile=False):
        return self._run([*self.python, *map(str, args)], None, profile)

    def _run(self, cmd, timeout, profile):
        start = time.perf_counter()
        facts = run_json_rusage(cmd, timeout=timeout)
        if profile and not facts.get("timed_out"):
            # The operation's own time when the process reports it, else the process's.
            self.want_profile(limiter.Target(cmd, dict(os.environ), region=True,
                                             expected_s=facts.get("seconds",
                                                                  time.perf_counter() - start)))
        return facts

    def start_profiling(self, scratch):
        self.limiter = limiter.Limiter(scratch)
        return self.limiter.unavailable or ("perf with syscall and switch records"
                                            if self.limiter.syscalls else "perf, CPU only")

    def want_profile(self, target):
        """Profile `target` for this case (unless the case named one already)."""
        if self.target is None and self.limits_line is None:
            self.target = target

    def profile_pending(self):
        """Run the case's profile now (a case that stops a server it started calls this before
        stopping it); otherwise the driver runs it when the case ends."""
        if self.target is None:
            return
        target, self.target = self.target, None
        start = time.perf_counter()
        try:
            limits = self.limiter.measure(target, timeout=PROFILE_RECORD_S + 120,
                                          record_s=PROFILE_RECORD_S)
            self.limits_line = limiter.summarise(limits, os.cpu_count() or 1)
        except limiter.LimiterError as error:
            self.limits_line = f"unknown: the profile run failed: {error}"
        self.limits_line += f" [{' '.join(os.path.basename(a) for a in target.argv[:3])}]"
        self.profile_s += time.perf_counter() - start

    def finish_case(self):
        """The case's "limited by" line and the seconds its profile run took; resets both."""
        self.profile_pending()
        line, seconds = self.limits_line, self.profile_s
        self.limits_line, self.profile_s = None, 0.0
        return line, seconds


# ---------------------------------------------------------------------------------------------
# A private PostgreSQL cluster, as the tests start one (tests/support/pg_cluster.cc), but with
# PostgreSQL's durable defaults (fsync on): the benchmark measures what production pays.


# ---------------------------------------------------------------------------------------------
# Bulk loading the catalog. Row i (1..N): created 2024-01-01T00:00:00Z + i minutes by
# user (i % 50); h = i * 2654435761 mod 2^32 spreads the rest: status from h % 100 (70%
# completed, 12% failed, 8% cancelled, 5% pending, 5% running), alpha (h / 100) % 40, backtest
# range from h, mean_ic in [-0.1, 0.1] for completed jobs. btstore_bench's `list` filters
# (bench/btstore_bench.cc, BenchFilters) rely on these fractions.

def status_sql(mod):
    """The status of row i from h; `mod` spells a remainder in the SQL dialect."""
    return (f"CASE WHEN {mod('h', 100)} < 70 THEN 'completed' "
            f"WHEN {mod('h', 100)} < 82 THEN 'failed' "
            f"WHEN {mod('h', 100)} < 90 THEN 'cancelled' "
            f"WHEN {mod('h', 100)} < 95 THEN 'pending' ELSE 'running' END")


COLUMNS = """(id, job_id, status, alpha_name, start_date, end_date, weight_method, config_json,
              created_at, started_at, completed_at, worker_id, progress_pct, result_path,
              mean_ic, icir, hit_rate, snapshot_id, dataset_version_ids, created_by, attempt)"""

LOAD_PG = f"""
INSERT INTO backtest_jobs {COLUMNS}
SELECT gen_random_uuid(), 'bench-' || i, st, 'alpha' || mod(h / 100, 40),
       DATE '2000-01-01' + mod(h / 4000, 8000)::int,
       DATE '2000-01-01' + mod(h / 4000, 8000)::int + 250 + mod(h, 3000)::int,
       'equal', '{{"engine":"synthetic"}}'::jsonb, ts,
       CASE WHEN st <> 'pending' THEN ts + interval '1 minute' END,
       CASE WHEN st IN ('completed','failed','cancelled') THEN ts + interval '10 minutes' END,
       CASE WHEN st <> 'pending' THEN 'bench-worker' END,
       CASE WHEN st = 'completed' THEN 100 ELSE 0 END,
       CASE WHEN st = 'completed' THEN %(root)s || '/bench-' || i END,
       CASE WHEN st = 'completed' THEN mod(h / 1000, 2001) / 10000.0 - 0.1 END,
       CASE WHEN st = 'completed' THEN (mod(h / 1000, 2001) / 10000.0 - 0.1) * 10 END,
       CASE WHEN st = 'completed' THEN 0.5 + mod(h / 1000, 2001) / 10000.0 - 0.1 END,
       CASE WHEN st = 'completed' THEN 'snap-1' END,
       CASE WHEN st = 'completed' THEN '{{"crsp":"v1"}}'::jsonb END,
       'user' || mod(i, 50),
       CASE WHEN st = 'pending' THEN 0 ELSE 1 END
FROM generate_series(1, %(rows)s) AS i,
     LATERAL (SELECT mod(i::bigint * 2654435761, 4294967296) AS h) AS hh,
     LATERAL (SELECT {status_sql(lambda a, b: f"mod({a}, {b})")} AS st,
                     TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * interval '1 minute' AS ts) AS d
"""

# SQLite stores timestamps as fixed-width RFC 3339 text (src/catalog/sqlite/migrations/0001).
SQLITE_TS = "strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01 00:00:00', '+{} minutes') || '.000000Z'"

LOAD_SQLITE = f"""
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :rows),
hashed AS (SELECT i, (i * 2654435761) % 4294967296 AS h FROM seq),
jobs AS (SELECT i, h, {status_sql(lambda a, b: f'({a} % {b})')} AS st FROM hashed)
INSERT INTO backtest_jobs {COLUMNS}
SELECT printf('%08x-0000-4000-8000-%012x', h, i), 'bench-' || i, st, 'alpha' || ((h / 100) % 40),
       date('2000-01-01', '+' || (h / 4000 % 8000) || ' days'),
       date('2000-01-01', '+' || (h / 4000 % 8000 + 250 + h % 3000) || ' days'),
       'equal', '{{"engine":"synthetic"}}', {SQLITE_TS.format("' || i || '")},
       CASE WHEN st <> 'pending' THEN {SQLITE_TS.format("' || (i + 1) || '")} END,
       CASE WHEN st IN ('completed','failed','cancelled')
            THEN {SQLITE_TS.format("' || (i + 10) || '")} END,
       CASE WHEN st <> 'pending' THEN 'bench-worker' END,
       CASE WHEN st = 'completed' THEN 100 ELSE 0 END,
       CASE WHEN st = 'completed' THEN :root || '/bench-' || i END,
       CASE WHEN st = 'completed' THEN ((h / 1000) % 2001) / 10000.0 - 0.1 END,
       CASE WHEN st = 'completed' THEN (((h / 1000) % 2001) / 10000.0 - 0.1) * 10 END,
       CASE WHEN st = 'completed' THEN 0.5 + ((h / 1000) % 2001) / 10000.0 - 0.1 END,
       CASE WHEN st = 'completed' THEN 'snap-1' END,
       CASE WHEN st = 'completed' THEN '{{"crsp":"v1"}}' END,
       'user' || (i % 50),
       CASE WHEN st = 'pending' THEN 0 ELSE 1 END
FROM jobs
"""

# Retention input: N completed jobs that ended 200 days ago, each with a bundle directory
# root/<prefix><i>.
RETENTION_PG = """
INSERT INTO backtest_jobs (job_id, status, alpha_name, start_date, end_date, weight_method,
                           config_json, created_at, started_at, completed_at, progress_pct,
                           result_path, snapshot_id, dataset_version_ids, created_by, attempt)
SELECT %(prefix)s || i, 'completed', 'retention', DATE '2020-01-01', DATE '2020-12-31', 'equal',
       '{}'::jsonb, now() - interval '201 days', now() - interval '201 days',
       now() - interval '200 days', 100, %(root)s || '/' || %(prefix)s || i, 'snap-1',
       '{"crsp":"v1"}'::jsonb, 'bench', 1
FROM generate_series(1, %(rows)s) AS i
"""

RETENTION_SQLITE = """
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :rows)
INSERT INTO backtest_jobs (id, job_id, status, alpha_name, start_date, end_date, weight_method,
                           config_json, created_at, started_at, completed_at, progress_pct,
                           result_path, snapshot_id, dataset_version_ids, created_by, attempt)
SELECT printf('00000000-0000-4000-8000-%012x', i), :prefix || i, 'completed', 'retention',
       '2020-01-01', '2020-12-31', 'equal', '{}',
       strftime('%Y-%m-%dT%H:%M:%S', 'now', '-201 days') || '.000000Z',
       strftime('%Y-%m-%dT%H:%M:%S', 'now', '-201 days') || '.000000Z',
       strftime('%Y-%m-%dT%H:%M:%S', 'now', '-200 days') || '.000000Z', 100,
       :root || '/' || :prefix || i, 'snap-1', '{"crsp":"v1"}', 'bench', 1
FROM seq
"""


def bulk_load(url, sql_pg, sql_sqlite, params):
    """Load rows with one INSERT ... SELECT; return seconds.

    The catalog's secondary indexes are dropped first and re-created afterwards from their own
    definitions (read back from the database), since building an index once is much faster
    than maintaining it row by row; the schema measured afterwards is the migrated one.
    """
    start = time.perf_counter()
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:"):])
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: the indexes of 1M rows fit
        indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                               "tbl_name = 'backtest_jobs' AND sql IS NOT NULL").fetchall()
        with conn:
            for name, _ in indexes:
                conn.execute(f'DROP INDEX "{name}"')
            conn.execute(sql_sqlite, params)
            for _, sql in indexes:
                conn.execute(sql)
        conn.execute("ANALYZE")
        conn.close()
    else:
        import psycopg
        with psycopg.connect(url) as conn:
            conn.execute("SET maintenance_work_mem = '256MB'")
            indexes = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'backtest_jobs' "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint)").fetchall()
            for name, _ in indexes:
                conn.execute(f'DROP INDEX "{name}"')
            conn.execute(sql_pg, params)
            for _, sql in indexes:
                conn.execute(sql)
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE backtest_jobs")
    return time.perf_counter() - start


def count_rows(url, where):
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:"):])
        (count,) = conn.execute(f"SELECT count(*) FROM backtest_jobs WHERE {where}").fetchone()
        conn.close()
        return count
    import psycopg
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM backtest_jobs WHERE {where}").fetchone()[0]


# ---------------------------------------------------------------------------------------------
# Rows and printing


def median(values):
    return statistics.median(values) if values else float("nan")


class Report:
    def __init__(self):
        self.rows = []

    def add(self, case, tool, median_s, btstore_s, **extra):
        row = {"case": case, "tool": tool, "median_s": median_s,
               "ratio_vs_btstore": (median_s / btstore_s) if btstore_s else None}
        row.update(extra)
        self.rows.append(row)
        return row

    def print_case(self, case):
        rows = [r for r in self.rows if r["case"] == case]
        print(f"\n== {case}")
        for r in rows:
            extra = []
            for key in ("p99_s", "peak_rss_mb", "table_mb", "peak_over_tables", "bytes_read_mb",
                        "requests", "rows", "jobs_per_s", "note"):
                if key in r and r[key] is not None:
                    value = r[key]
                    extra.append(f"{key}={value:.4g}" if isinstance(value, float) else
                                 f"{key}={value}")
            ratio = r["ratio_vs_btstore"]
            ratio_text = f"{ratio:6.2f}x" if ratio is not None else "   -   "
            print(f"  {r['tool']:<28} median {r['median_s'] * 1000:10.2f} ms  ratio {ratio_text}  "
                  + " ".join(extra))
            if "target" in r:
                verdict = {True: "MET", False: "NOT MET", None: "n/a"}[r["target_met"]]
                print(f"  {'':<28} target: {r['target']} -> {verdict}")
        sys.stdout.flush()


def runs_summary(runs):
    return {"runs_s": [round(r["seconds"], 6) for r in runs]}


def memory_of(runs):
    """Median peak RSS of the timed operation, and the tables' in-memory size."""
    peak = median([r["peak_rss_mb"] for r in runs])
    before = median([r["rss_before_mb"] for r in runs])
    table = median([r["table_bytes"] for r in runs]) / MIB
    return {"peak_rss_mb": peak, "rss_before_mb": before, "added_rss_mb": peak - before,
            "table_mb": table, "peak_over_tables": peak / table if table else None,
            "process_peak_rss_mb": median([r["process_peak_rss_mb"] for r in runs])}


# ---------------------------------------------------------------------------------------------
# Cases 1-3 and 7


class BundleCases:
    def __init__(self, bench, settings, work, report):
        self.bench, self.s, self.work, self.report = bench, settings, work, report
        self.sources = {}
        self.memory = {}  # (what, dataset) -> memory facts of btstore, for case 7

    def source(self, name, days, symbols):
        """The dataset as a bundle written once by btstore; the peers read its files."""
        if name not in self.sources:
            path = os.path.join(self.work, f"src-{name}")
            facts = self.bench.cpp("gen", "--out", path, "--days", days, "--symbols", symbols)
            self.sources[name] = path
            print(f"  generated {name}: {days} days x {symbols} permnos, "
                  f"{facts['rows']:,} rows per table, {facts['file_bytes'] / MIB:.1f} MiB on disk")
        return self.sources[name]

    def case1(self):
        for name, days, symbols in self.s.datasets:
            src = self.source(name, days, symbols)
            runs = {t: [] for t in ("btstore", "raw Arrow C++", "pyarrow", "polars")}
            for rep in range(self.s.repeats[name]):
                for tool in runs:  # interleaved, so drift in the machine hits every tool alike
                    out = os.path.join(self.work, f"w-{name}-{rep}-{tool.split()[0]}")
                    # Nothing left dirty by the tool before (the peers do not flush) for
                    # btstore's flushes to write back: each tool starts from a clean cache.
                    os.sync()
                    if tool == "btstore":
                        facts = self.bench.cpp("write", "--mode", "btstore", "--out", out,
                                               "--days", days, "--symbols", symbols,
                                               profile=True)
                    elif tool == "raw Arrow C++":
                        facts = self.bench.cpp("write", "--mode", "raw", "--out", out,
                                               "--days", days, "--symbols", symbols)
                    else:
                        facts = self.bench.peer("write", "--tool", tool, "--src", src,
                                                "--out", out)
                    runs[tool].append(facts)
                    shutil.rmtree(out, ignore_errors=True)
            case = f"1 write {name} ({days}x{symbols})"
            med = {t: median([r["seconds"] for r in rs]) for t, rs in runs.items()}
            fastest_peer = min(med["pyarrow"], med["polars"])
            met = (SPEEDUP * med["btstore"] <= fastest_peer
                   and med["btstore"] <= SPEEDUP * med["raw Arrow C++"])
            self.memory[("write", name)] = memory_of(runs["btstore"])
            for tool, rs in runs.items():
                row = self.report.add(case, tool, med[tool], med["btstore"],
                                      file_mb=median([r["file_bytes"] for r in rs]) / MIB,
                                      **memory_of(rs), **runs_summary(rs))
                if tool == "btstore":
                    row["target"] = (f"at least {SPEEDUP}x faster than the faster of pyarrow "
                                     f"and polars and within {SPEEDUP}x of raw Arrow C++; "
                                     "btstore also checksums and fsyncs")
                    row["target_met"] = met
                    row["speedup_vs_fastest_peer"] = fastest_peer / med["btstore"]
                    row["ratio_vs_raw"] = med["btstore"] / med["raw Arrow C++"]
            self.report.print_case(case)

    def case2(self):
        for name, days, symbols in self.s.datasets:
            src = self.source(name, days, symbols)
            runs = {t: [] for t in ("btstore", "pyarrow", "polars")}
            for _ in range(self.s.repeats[name]):
                for tool in runs:
                    if tool == "btstore":
                        facts = self.bench.cpp("read", "--dir", src, profile=True)
                    else:
                        facts = self.bench.peer("read", "--tool", tool, "--dir", src)
                    runs[tool].append(facts)
            case = f"2 read whole {name} ({days}x{symbols})"
            med = {t: median([r["seconds"] for r in rs]) for t, rs in runs.items()}
            self.memory[("read", name)] = memory_of(runs["btstore"])
            for tool, rs in runs.items():
                row = self.report.add(case, tool, med[tool], med["btstore"], **memory_of(rs),
                                      **runs_summary(rs))
                if tool == "btstore":
                    row["target"] = (f"at least {SPEEDUP}x faster than the faster of polars "
                                     "and pyarrow (btstore verifies checksums)")
                    fastest_peer = min(med["pyarrow"], med["polars"])
                    row["target_met"] = SPEEDUP * med["btstore"] <= fastest_peer
                    row["speedup_vs_fastest_peer"] = fastest_peer / med["btstore"]
            self.report.print_case(case)

    def case3(self):
        name, days, symbols = self.s.datasets[0]
        src = self.source(name, days, symbols)
        runs = {t: [] for t in ("btstore", "polars", "pyarrow", "btstore full signals read")}
        for _ in range(self.s.repeats[name]):
            for tool in runs:
                if tool == "btstore":
                    facts = self.bench.cpp("read", "--dir", src, "--from", MONTH[0], "--to",
                                           MONTH[1], "--tables", "daily_signals", profile=True)
                elif tool == "btstore full signals read":
                    facts = self.bench.cpp("read", "--dir", src, "--tables", "daily_signals")
                else:
                    facts = self.bench.peer("month", "--tool", tool, "--dir", src, "--from",
                                            MONTH[0], "--to", MONTH[1])
                runs[tool].append(facts)
        case = f"3 read one month of signals {MONTH[0]}..{MONTH[1]} from {name}"
        med = {t: median([r["seconds"] for r in rs]) for t, rs in runs.items()}
        file_bytes = os.path.getsize(os.path.join(src, "daily_signals.parquet"))
        self.memory[("month", name)] = memory_of(runs["btstore"])
        self.memory[("full-signals", name)] = memory_of(runs["btstore full signals read"])
        for tool, rs in runs.items():
            extra = {}
            if "bytes_read" in rs[0]:
                extra["bytes_read_mb"] = median([r["bytes_read"] for r in rs]) / MIB
                extra["bytes_read_fraction"] = median([r["bytes_read"] for r in rs]) / file_bytes
                extra["row_groups_read"] = rs[0]["row_groups_read"]
                extra["row_groups_skipped"] = rs[0]["row_groups_skipped"]
            row = self.report.add(case, tool, med[tool], med["btstore"], rows=rs[0]["rows"],
                                  **extra, **memory_of(rs), **runs_summary(rs))
            if tool == "btstore":
                fraction = med["btstore"] / med["btstore full signals read"]
                row["fraction_of_full_read"] = fraction
                row["target"] = ("< 5% of the time of a full read of the same file "
                                 f"(measured: {fraction * 100:.1f}%)")
                row["target_met"] = fraction < 0.05
        self.report.print_case(case)

    def case10(self):
        """Bundles on S3: the result written, read whole and read by month through a local moto
        server: btstore as the executable (checksums and a catalog commit included, process start
        too) and in process through its Python package, vs pyarrow and polars in process on the
        same tables and server. The bytes each fetches for the month are counted by a proxy in
        front of the server, in a separate untimed run (the proxy would slow the timed ones)."""
        name, days, symbols = self.s.datasets[0]
        src = self.source(name, days, symbols)
        server = S3Server(bucket="btstore-bench")
        proxy = FaultProxy(server)
        try:
            env = {**os.environ, **server.env(), "TMPDIR": self.work}
            root = f"s3://{server.bucket}/btstore"
            url = f"sqlite:{os.path.join(self.work, 's3-bench.db')}"
            btstore = [os.path.join(self.bench.build_dir, "btstore"), "--catalog", url,
                       "--artifact-root", root, "--json"]
            peers = [sys.executable, os.path.join(HERE, "s3_peers.py")]
            in_process = "btstore in process (Python package)"

            def timed(cmd, run_env=env):
                start = time.perf_counter()
                proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True,
                                      timeout=600)
                seconds = time.perf_counter() - start
                if proc.returncode != 0:
                    raise StepFailed(f"{' '.join(cmd[:6])}...: {proc.stderr[-500:]}")
                return seconds, json.loads(proc.stdout)

            def fetched(cmd):
                """Requests and bytes that `cmd` fetches, counted through the proxy."""
                proxy.reset_faults()
                timed(cmd, {**env, **proxy.env()})
                return {"requests": len(proxy.requests),
                        "bytes_fetched": sum(r[4] for r in proxy.requests)}

            subprocess.run([*btstore, "migrate"], env=env, check=True, capture_output=True)
            tools = ("btstore", in_process, "pyarrow", "polars", "pyarrow in process",
                     "polars in process")
            runs = {op: {t: [] for t in tools} for op in ("write", "read", "month")}
            month_args = ["--from", MONTH[0], "--to", MONTH[1]]
            job = None
            for i in range(self.s.s3_repeats):
                seconds, doc = timed([*btstore, "import", src, "--alpha", "bench", "--start",
                                      "2010-01-04", "--end", "2019-12-31", "--job-id",
                                      f"s3-bench-{i}"])
                runs["write"]["btstore"].append(seconds)
                job = doc["job_id"]
                _, facts = timed([*peers, "write", "--tool", "btstore", "--catalog", url,
                                  "--uri", root, "--src", src, "--job", f"s3-bench-py-{i}",
                                  "--from", "2010-01-04", "--to", "2019-12-31"])
                runs["write"][in_process].append(facts["seconds"])
                for tool in ("pyarrow", "polars"):
                    seconds, facts = timed([*peers, "write", "--tool", tool, "--src", src,
                                            "--uri", f"s3://{server.bucket}/{tool}-{i}"])
                    runs["write"][tool].append(seconds)
                    runs["write"][f"{tool} in process"].append(facts["seconds"])
                seconds, _ = timed([*btstore, "result", job])
                runs["read"]["btstore"].append(seconds)
                _, facts = timed([*peers, "read", "--tool", "btstore", "--catalog", url, "--uri",
                                  root, "--job", job])
                runs["read"][in_process].append(facts["seconds"])
                for tool in ("pyarrow", "polars"):
                    _, facts = timed([*peers, "read", "--tool", tool, "--uri",
                                      f"s3://{server.bucket}/{tool}-{i}"])
                    runs["read"][tool].append(facts["seconds"])
                seconds, doc = timed([*btstore, "result", job, "--tables", "daily_signals",
                                      *month_args])
                runs["month"]["btstore"].append(seconds)
                _, facts = timed([*peers, "month", "--tool", "btstore", "--catalog", url,
                                  "--uri", root, "--job", job, *month_args])
                runs["month"][in_process].append(facts["seconds"])
                _, facts = timed([*peers, "month", "--tool", "polars", "--uri",
                                  f"s3://{server.bucket}/polars-{i}", *month_args])
                runs["month"]["polars"].append(facts["seconds"])
            month_fetch = {
                "btstore": fetched([*btstore, "result", job, "--tables", "daily_signals",
                                    *month_args]),
                "polars": fetched([*peers, "month", "--tool", "polars", "--uri",
                                   f"s3://{server.bucket}/polars-0", *month_args])}
            month_fetch[in_process] = month_fetch["btstore"]  # the same reader and requests
            file_bytes = os.path.getsize(os.path.join(src, "daily_signals.parquet"))
            for op, by_tool in runs.items():
                case = f"10 S3 (local moto server) {op} of {name}" + (
                    f", one month {MONTH[0]}..{MONTH[1]} of signals" if op == "month" else "")
                med = {t: median(v) for t, v in by_tool.items() if v}
                for tool, value in med.items():
                    if tool == "btstore":
                        note = ("timed as a process (start, reading the local bundle, catalog "
                                "commit)" if op == "write" else
                                "timed as a process (start, S3 client, catalog lookup)")
                    elif op == "write" and tool in ("pyarrow", "polars"):
                        note = "timed as a process (start, imports, reading the local tables)"
                    else:
                        note = "timed in process"
                    extra = {"note": note, "runs_s": [round(r, 6) for r in by_tool[tool]]}
                    if op == "month" and tool in month_fetch:
                        facts = month_fetch[tool]
                        extra["requests"] = facts["requests"]
                        extra["bytes_read_mb"] = facts["bytes_fetched"] / MIB
                        extra["bytes_read_fraction"] = facts["bytes_fetched"] / file_bytes
                    base = (med[in_process] if op == "write" and "in process" in tool
                            else med["btstore"])
                    row = self.report.add(case, tool, value, base, **extra)
                    if op == "write" and tool in ("btstore", in_process):
                        # Like with like: processes with processes, in process with in process.
                        suffix = "" if tool == "btstore" else " in process"
                        fastest = min(med[f"pyarrow{suffix}"], med[f"polars{suffix}"])
                        row["target"] = ("at least as fast as the faster of pyarrow and polars "
                                         "writing the same tables to the same server"
                                         + (", all timed in process" if suffix else
                                            ", all timed as processes")
                                         + "; btstore also checksums and commits to its catalog")
                        row["target_met"] = value <= fastest
                self.report.print_case(case)
            # The btstore executable's whole read from S3, profiled while the server runs.
            self.bench.want_profile(limiter.Target([*btstore, "result", job], env,
                                                   region=False,
                                                   expected_s=median(runs["read"]["btstore"])))
            self.bench.profile_pending()
        finally:
            proxy.close()
            server.close()

    def case8(self):
        for name, days, symbols in self.s.datasets:
            src = self.source(name, days, symbols)
            root = os.path.join(self.work, f"engine-{name}")
            url = f"sqlite:{os.path.join(self.work, f'engine-{name}.db')}"
            facts = self.bench.cpp("engine", "--catalog", url, "--root", root, "--src", src,
                                   "--repeats", self.s.repeats[name], profile=True)
            case = f"8 command engine overhead, {name} ({days}x{symbols}), sqlite"
            held, copy = facts["held"]["p50_s"], facts["copy"]["p50_s"]
            self.report.add(case, "btstore in-process engine", held, held, **facts["held"])
            row = self.report.add(case, "btstore command engine", copy, held,
                                  overhead_s=facts["overhead_s"], ratio=facts["ratio"],
                                  **facts["copy"])
            row["target"] = ("reported: process start, reading and validating the program's "
                             "output, over the same result returned in-process")
            row["target_met"] = None
            self.report.print_case(case)
            self.bench.profile_pending()  # before its bundles go
            remove_tree(root)

    def case7(self):
        name = self.s.datasets[0][0]
        case = f"7 memory of cases 1-3 on {name}"
        write = self.memory.get(("write", name))
        read = self.memory.get(("read", name))
        month = self.memory.get(("month", name))
        full_signals = self.memory.get(("full-signals", name))
        if write:
            row = self.report.add(case, "btstore write (case 1)", None, None, **write)
            row["target"] = "peak RSS < 1.5x the in-memory size of the tables"
            row["target_met"] = write["peak_over_tables"] < 1.5
        if read:
            row = self.report.add(case, "btstore whole read (case 2)", None, None, **read)
            row["target"] = "peak RSS < 1.5x the in-memory size of the tables"
            row["target_met"] = read["peak_over_tables"] < 1.5
        if month and full_signals:
            share = month["added_rss_mb"] / full_signals["added_rss_mb"]
            row = self.report.add(case, "btstore month read (case 3)", None, None,
                                  month_added_over_full_added=share, **month)
            row["target"] = ("memory added by the one-month read < 10% of that of a full read "
                             f"of the same file (measured {share * 100:.1f}%)")
            row["target_met"] = share < 0.10
        print(f"\n== {case}")
        for r in [r for r in self.report.rows if r["case"] == case]:
            verdict = {True: "MET", False: "NOT MET"}[r["target_met"]]
            print(f"  {r['tool']:<28} peak {r['peak_rss_mb']:8.1f} MiB  before "
                  f"{r['rss_before_mb']:7.1f} MiB  tables {r['table_mb']:8.1f} MiB  "
                  f"peak/tables {r['peak_over_tables']:.2f}  -> {verdict}: {r['target']}")


# ---------------------------------------------------------------------------------------------
# Cases 4-6


class CatalogCases:
    def __init__(self, bench, settings, work, report):
        self.bench, self.s, self.work, self.report = bench, settings, work, report
        self.pg = None
        self.sqlite_files = 0
        self.listing = {}  # backend -> (url, load seconds) of listing_catalog

    def catalog(self, backend):
        """A new, migrated, empty catalog of `backend`; returns its URL."""
        if backend == "postgresql":
            if self.pg is None:
                try:
                    # fsync on: the benchmark measures durable commits.
                    self.pg = PgCluster(parent=self.work, fsync=True, max_connections=100,
                                        stop_mode="fast", prefix="pg-")
                except PgClusterError as error:
                    raise StepFailed(str(error)) from error
            url = self.pg.new_database(prefix="bench_")
        else:
            self.sqlite_files += 1
            url = f"sqlite:{self.work}/catalog{self.sqlite_files}.db"
        self.bench.cpp("migrate", "--catalog", url)
        return url

    def close(self):
        if self.pg is not None:
            self.pg.stop()

    def listing_catalog(self, backend):
        """A catalog of `backend` bulk-loaded with the listing rows (catalog_rows of them); made
        once per run, since listing only reads it (cases 4 and 9); returns (url, load seconds)."""
        if backend not in self.listing:
            url = self.catalog(backend)
            rows = self.s.catalog_rows
            load_s = bulk_load(url, LOAD_PG, LOAD_SQLITE,
                               {"rows": rows, "root": os.path.join(self.work, "results")})
            print(f"  {backend}: loaded {rows:,} jobs in {load_s:.1f} s "
                  f"({rows / load_s:,.0f} rows/s)")
            self.listing[backend] = (url, load_s)
        return self.listing[backend]

    def case4(self):
        rows = self.s.catalog_rows
        for backend in ("postgresql", "sqlite"):
            url, load_s = self.listing_catalog(backend)
            facts = self.bench.cpp("list", "--catalog", url, "--rows", rows, "--iterations",
                                   self.s.list_iterations, profile=True)
            for f in facts["filters"]:
                case = f"4 list_jobs {backend} {rows:,} jobs, filter={f['filter']}"
                first = f["first"]
                deep = f["deep_cursor"]
                offset = f["deep_offset"]
                row = self.report.add(case, "btstore first page", first["p50_s"], first["p50_s"],
                                      p99_s=first["p99_s"], max_s=first["max_s"],
                                      rows=f["first_rows"], load_s=load_s)
                deep_ok = deep["p50_s"] <= 1.2 * first["p50_s"] or deep["p50_s"] < 0.001
                row["target"] = ("p99 < 10 ms for the first and the deep cursor page; deep "
                                 "cursor page as fast as the first (p50 within 1.2x or < 1 ms)"
                                 + ("" if backend == "postgresql" else
                                    " [a PostgreSQL target; SQLite reported against it]"))
                row["target_met"] = first["p99_s"] < 0.010 and deep["p99_s"] < 0.010 and deep_ok
                self.report.add(case, f"btstore cursor @{f['depth']:,}", deep["p50_s"],
                                first["p50_s"], p99_s=deep["p99_s"], max_s=deep["max_s"],
                                rows=f["deep_rows"], pages_agree=f["pages_agree"])
                self.report.add(case, f"btstore offset @{f['depth']:,}", offset["p50_s"],
                                first["p50_s"], p99_s=offset["p99_s"], max_s=offset["max_s"],
                                rows=f["deep_rows"])
                self.report.print_case(case)

    def case5(self):
        jobs = self.s.retention_jobs
        src = os.path.join(self.work, "retention-src")
        if not os.path.isdir(src):
            self.bench.cpp("gen", "--out", src, "--days", 5, "--symbols", 10)
        prefix = "ret-"
        for backend in self.s.retention_backends:
            url, root, made, load_s = self.expired_jobs(src, backend, jobs, prefix, backend)
            print(f"  {backend}: {jobs:,} expired jobs: bundles made in {made['seconds']:.1f} s "
                  f"(hard links), rows loaded in {load_s:.1f} s")
            budget = self.s.retention_budget_s
            facts = self.bench.cpp("retention", "--catalog", url, "--root", root,
                                   timeout=budget)
            left = [d for d in os.listdir(root) if d.startswith(prefix)]
            rows_left = count_rows(url, "job_id LIKE 'ret-%'")
            case = f"5 retention of {jobs:,} expired jobs, {backend}"
            if facts.get("timed_out"):
                # Stopped at the budget: the rows deleted so far give the rate; the progress
                # lines it printed give its memory along the way.
                progress = facts["lines"]
                removed = jobs - rows_left
                rate = removed / budget
                seconds = jobs / rate if rate else float("inf")
                note = (f"stopped after {budget} s with {removed:,} removed; time projected "
                        f"from that rate")
                facts = {"seconds": seconds, "removed": removed, "jobs_per_s": rate}
                if progress:
                    facts["peak_rss_mb"] = progress[-1]["peak_rss_mb"]
                    facts["rss_first_progress_mb"] = progress[0]["rss_mb"]
                    facts["rss_last_progress_mb"] = progress[-1]["rss_mb"]
            else:
                note = "one run (the setup is the expensive part)"
            row = self.report.add(case, "btstore CleanupOldResults", facts["seconds"],
                                  facts["seconds"], removed=facts["removed"],
                                  rows_left=rows_left, bundles_left=len(left),
                                  jobs_per_s=facts["jobs_per_s"],
                                  peak_rss_mb=facts.get("peak_rss_mb"),
                                  rss_before_mb=facts.get("rss_before_mb"),
                                  rss_first_progress_mb=facts.get("rss_first_progress_mb"),
                                  rss_last_progress_mb=facts.get("rss_last_progress_mb"),
                                  completed_run=note.startswith("one run"), note=note)
            row["target"] = (f"< 60 s for {jobs:,} jobs, every job removed, flat memory "
                             "(peak RSS reported)")
            if note.startswith("one run"):
                row["target_met"] = (facts["seconds"] < 60 and facts["removed"] == jobs
                                     and not left and rows_left == 0)
            else:  # stopped at the budget: judged by the projected time
                row["target_met"] = facts["seconds"] < 60
            self.report.print_case(case)
            remove_tree(root)
            # The run above removed its input: the profile run gets expired jobs of its own, on
            # the same backend: a tenth of the measured ones, at most one batch of retention's.
            few = min(jobs // 10, 1000)
            url, root, _, _ = self.expired_jobs(src, backend, few, prefix, f"{backend}-profile")
            self.bench.want_profile(limiter.Target(
                [self.bench.exe, "retention", "--catalog", url, "--root", root], dict(os.environ),
                expected_s=facts["seconds"] * few / jobs))

    def expired_jobs(self, src, backend, jobs, prefix, name):
        """A new catalog of `backend` with `jobs` completed jobs that expired 200 days ago, and
        their bundles (hard links to `src`'s files) under a new root; returns (url, root, the
        replicator's facts, seconds of the bulk load)."""
        url = self.catalog(backend)
        root = os.path.join(self.work, f"retention-{name}")
        os.makedirs(root)
        made = self.bench.cpp("replicate", "--src", src, "--root", root, "--count", jobs,
                              "--prefix", prefix)
        load_s = bulk_load(url, RETENTION_PG, RETENTION_SQLITE,
                           {"rows": jobs, "root": root, "prefix": prefix})
        return url, root, made, load_s

    def case6(self):
        root = os.path.join(self.work, "lifecycle")
        for backend in ("postgresql", "sqlite"):
            url = self.catalog(backend)
            self.throughput(url, root, backend)

            facts = self.bench.cpp("cancel", "--catalog", url, "--root", root, "--samples",
                                   self.s.cancel_samples)
            case = f"6 cancel latency of a running job, {backend}"
            row = self.report.add(case, "btstore request->cancelled", facts["p50_s"],
                                  facts["p50_s"], p99_s=facts["p99_s"], max_s=facts["max_s"],
                                  samples=facts["samples"], timeouts=facts["timeouts"],
                                  all_s=facts["all_s"])
            if backend == "postgresql":
                row["target"] = "p99 < 250 ms (LISTEN/NOTIFY)"
                row["target_met"] = facts["p99_s"] < 0.250 and facts["timeouts"] == 0
            else:
                row["target"] = "reported (SQLite: heartbeat polling); 250 ms used as the bound"
                row["target_met"] = facts["p99_s"] < 0.250 and facts["timeouts"] == 0
            self.report.print_case(case)

    def throughput(self, url, root, backend):
        """Case 6 throughput: the machine's ceiling, the workers before and after the levers,
        and the queue alone, all on one catalog in one run. The ceiling at the tuned in-flight
        count and the tuned workers are measured in alternation, several rounds, so that load
        from elsewhere hits both alike; the target compares their medians."""
        s = self.s
        inflight = 2 * s.throughput_concurrency
        case = f"6 lifecycle throughput, {s.throughput_jobs:,} no-op jobs, 2 workers, {backend}"
        # SQLite has one writer at a time: concurrent clients only queue for its lock.
        submitters = s.throughput_submitters if backend == "postgresql" else 1

        def ceiling(threads, jobs):
            return self.bench.cpp("ceiling", "--catalog", url, "--root", root, "--jobs", jobs,
                                  "--threads", threads)

        def workers(concurrency, clients):
            return self.bench.cpp("throughput", "--catalog", url, "--root", root, "--jobs",
                                  s.throughput_jobs, "--workers", 2, "--concurrency",
                                  concurrency, "--submitters", clients,
                                  profile=concurrency == s.throughput_concurrency)

        serial = [ceiling(1, s.ceiling_jobs)]
        before = [workers(1, 1)]
        parallel, tuned = [], []
        for _ in range(s.throughput_rounds):
            parallel.append(ceiling(inflight, max(s.throughput_jobs // 2, inflight)))
            tuned.append(workers(s.throughput_concurrency, submitters))
        serial_rate = median([f["jobs_per_s"] for f in serial])
        ceiling_rate = median([f["jobs_per_s"] for f in parallel])
        for runs, name in ((serial, "ceiling, 1 job at a time"),
                           (parallel, f"ceiling, {inflight} jobs at a time")):
            rate = median([f["jobs_per_s"] for f in runs])
            self.report.add(case, name, 1 / rate, None, jobs_per_s=rate,
                            rounds_jobs_per_s=[f["jobs_per_s"] for f in runs],
                            claim_commit_ms=median([f["claim_commit_ms"] for f in runs]),
                            bundle_sync_ms=median([f["bundle_sync_ms"] for f in runs]),
                            complete_commit_ms=median([f["complete_commit_ms"] for f in runs]))
        for runs, name in ((before, "btstore, 1 in flight/worker, 1 client"),
                           (tuned, f"btstore, {s.throughput_concurrency} in flight/worker, "
                                   f"{submitters} client(s)")):
            e2e = median([r["end_to_end_jobs_per_s"] for r in runs])
            process = median([r["process_jobs_per_s"] for r in runs])
            seconds = median([r["submit_s"] + r["process_s"] for r in runs])
            row = self.report.add(case, name, seconds, None, jobs_per_s=e2e,
                                  submit_jobs_per_s=median([r["submit_jobs_per_s"] for r in runs]),
                                  process_jobs_per_s=process,
                                  rounds_process_jobs_per_s=[r["process_jobs_per_s"]
                                                             for r in runs],
                                  process_over_ceiling=process / ceiling_rate,
                                  process_over_serial_ceiling=process / serial_rate,
                                  completed=[r["completed"] for r in runs],
                                  peak_rss_mb=median([r["peak_rss_mb"] for r in runs]),
                                  runs_s=[r["submit_s"] + r["process_s"] for r in runs])
            if runs is tuned:
                row["target"] = (f"claim+complete >= 70% of the ceiling at {inflight} jobs in "
                                 "flight, and > 2,000 jobs/s end to end if that ceiling allows"
                                 + ("" if backend == "postgresql" else
                                    " [a PostgreSQL target; SQLite reported]"))
                row["target_met"] = (all(r["completed"] == r["jobs"] for r in runs)
                                     and process >= 0.7 * ceiling_rate
                                     and (e2e > 2000 or ceiling_rate <= 2000))
        for batch in (1, s.throughput_concurrency):
            facts = self.bench.cpp("queue", "--catalog", url, "--root", root, "--jobs",
                                   s.queue_jobs, "--workers", 2, "--batch", batch)
            per_core = facts["jobs_per_s"] / (os.cpu_count() or 1)
            self.report.add(case, f"queue alone, batch {batch}", 1 / facts["jobs_per_s"], None,
                            jobs_per_s=facts["jobs_per_s"], jobs_per_s_per_core=per_core,
                            completed=facts["completed"],
                            note=(f"{per_core:,.0f} jobs/s per core; published: River ~5,750/core "
                                  "(46k on 8 cores), Oban ~16.7k/s"))
        self.report.print_case(case)
        for r in self.report.rows:
            if r["case"] == case and "process_jobs_per_s" in r:
                print(f"  {r['tool']}: submit {r['submit_jobs_per_s']:,.0f} jobs/s; "
                      f"claim+complete {r['process_jobs_per_s']:,.0f} jobs/s "
                      f"({r['process_over_ceiling']:.0%} of the {inflight}-in-flight ceiling, "
                      f"{r['process_over_serial_ceiling']:.1f}x the serial one)")


# ---------------------------------------------------------------------------------------------


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": cpu,
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}

# ---------------------------------------------------------------------------------------------
# Case 9: the Python package


class PythonCases:
    """get_result into polars vs polars' read_parquet of the same files and vs the C++ read;
    ic_panel vs polars' scan_parquet over a glob; list_jobs from Python vs from C++. The page
    cache is warm in every run (dropping it needs root and disturbs a shared machine)."""

    def __init__(self, bench, settings, work, report, bundles, catalogs):
        self.bench, self.s, self.work, self.report = bench, settings, work, report
        self.bundles, self.catalogs = bundles, catalogs

    def case9(self):
        self.get_result()
        self.ic_panel()
        self.list_jobs()

    def get_result(self):
        name, days, symbols = self.s.datasets[0]
        src = self.bundles.source(name, days, symbols)
        url = self.catalogs.catalog("sqlite")
        root = os.path.join(self.work, "py-results")
        self.bench.py("import", "--catalog", url, "--root", root, "--src", src,
                      "--job-id", "large")
        runs = {t: [] for t in ("btstore Python get_result", "polars read_parquet",
                                "btstore C++ read")}
        for _ in range(self.s.get_result_repeats):
            for tool in runs:
                if tool == "btstore Python get_result":
                    facts = self.bench.py("get-result", "--catalog", url, "--root", root,
                                          "--job-id", "large", profile=True)
                elif tool == "polars read_parquet":
                    facts = self.bench.peer("read", "--tool", "polars", "--dir", src)
                else:
                    facts = self.bench.cpp("read", "--dir", src)
                runs[tool].append(facts)
        case = f"9 get_result into polars, {name} ({days}x{symbols})"
        med = {t: median([r["seconds"] for r in rs]) for t, rs in runs.items()}
        base = med["btstore Python get_result"]
        for tool, rs in runs.items():
            row = self.report.add(case, tool, med[tool], base, **runs_summary(rs))
            if tool == "btstore Python get_result":
                row["target"] = ("faster than pl.read_parquet of the same three files and "
                                 "within 1.1x of the C++ read")
                row["target_met"] = (base < med["polars read_parquet"]
                                     and base <= 1.1 * med["btstore C++ read"])
                row["ratio_vs_cpp"] = base / med["btstore C++ read"]
        self.report.print_case(case)

    def ic_panel(self):
        jobs = self.s.ic_panel_jobs
        url = self.catalogs.catalog("sqlite")
        root = os.path.join(self.work, "ic-results")
        made = self.bench.py("ic-jobs", "--catalog", url, "--root", root, "--jobs", jobs,
                             "--days", 2520, "--alpha", "panel")
        print(f"  made {jobs} jobs of 2,520 days in {made['seconds']:.1f} s")
        glob = os.path.join(root, "*", "daily_ic.parquet")
        catalog_file = url.split(":", 1)[1]
        for cache in ("warm", "cold"):
            runs = {"btstore ic_panel": [], "polars scan_parquet glob": []}
            for _ in range(self.s.ic_panel_repeats):
                for tool in runs:
                    if cache == "cold":
                        evict_page_cache([root, catalog_file])
                    if tool == "btstore ic_panel":
                        facts = self.bench.py("ic-panel", "--catalog", url, "--root", root,
                                              "--alpha", "panel")
                    else:
                        facts = self.bench.py("ic-glob", "--glob", glob)
                    runs[tool].append(facts)
            case = f"9 ic_panel of {jobs} jobs x 2,520 days ({cache} cache)"
            med = {t: median([r["seconds"] for r in rs]) for t, rs in runs.items()}
            base = med["btstore ic_panel"]
            for tool, rs in runs.items():
                row = self.report.add(case, tool, med[tool], base, rows=rs[0]["rows"],
                                      **runs_summary(rs))
                if tool == "btstore ic_panel":
                    row["target"] = "at least as fast as polars scan_parquet over the glob"
                    row["target_met"] = base <= med["polars scan_parquet glob"]
            self.report.print_case(case)

    def list_jobs(self):
        rows = self.s.catalog_rows
        url, _ = self.catalogs.listing_catalog("sqlite")  # case 4's, when it ran
        cpp = {f["filter"]: f["first"]["p50_s"] for f in
               self.bench.cpp("list", "--catalog", url, "--rows", rows, "--iterations",
                              self.s.list_iterations)["filters"]}
        py = self.bench.py("list", "--catalog", url, "--iterations", self.s.list_iterations)
        for f in py["filters"]:
            case = f"9 list_jobs first page from Python, sqlite {rows:,} jobs, filter={f['filter']}"
            self.report.add(case, "btstore C++", cpp[f["filter"]], cpp[f["filter"]])
            row = self.report.add(case, "btstore Python", f["p50_s"], cpp[f["filter"]],
                                  p99_s=f["p99_s"], rows=f["rows"])
            row["target"] = "within 1.5x of the C++ figure"
            row["target_met"] = f["p50_s"] <= 1.5 * cpp[f["filter"]]
            self.report.print_case(case)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer repetitions")
    parser.add_argument("--json-out", help="write every row as a JSON list to this file")
    parser.add_argument("--cases", default="1,2,3,4,5,6,7,8,9,10", help="e.g. 1,2,3")
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    parser.add_argument("--work-dir", help="scratch directory (default: a new one under $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    try:
        cases = sorted({int(c) for c in args.cases.split(",") if c.strip()})
    except ValueError:
        parser.error("--cases takes numbers 1-10, comma separated")
    if any(c < 1 or c > 10 for c in cases):
        parser.error("--cases takes numbers 1-10")
    if 7 in cases:  # memory is read off the btstore runs of cases 1-3
        cases = sorted(set(cases) | {1, 2, 3})

    settings = Settings(args.quick)
    bench = Bench(args.build_dir)
    work = args.work_dir or tempfile.mkdtemp(prefix="btstore-bench-")
    os.makedirs(work, exist_ok=True)
    report = Report()
    info = machine()
    print(f"btstore bench ({settings.mode}) on {info['nproc']} x {info['cpu']}, "
          f"{info['mem_gib']} GiB; cases {','.join(map(str, cases))}; scratch {work}")
    print(f"load average {os.getloadavg()[0]:.2f}; what limits each case: "
          f"{bench.start_profiling(work)}")
    started = time.perf_counter()
    case_seconds = {}
    bundles = BundleCases(bench, settings, work, report)
    catalogs = CatalogCases(bench, settings, work, report)
    python = PythonCases(bench, settings, work, report, bundles, catalogs)
    try:
        for case in cases:
            print(f"\n-- case {case}")
            case_start = time.perf_counter()
            try:
                {1: bundles.case1, 2: bundles.case2, 3: bundles.case3, 4: catalogs.case4,
                 5: catalogs.case5, 6: catalogs.case6, 7: bundles.case7,
                 8: bundles.case8, 9: python.case9, 10: bundles.case10}[case]()
            except StepFailed as error:
                # Report the failure as a row and go on with the other cases.
                print(f"  case {case} FAILED: {error}")
                report.rows.append({"case": str(case), "tool": "btstore", "median_s": None,
                                    "ratio_vs_btstore": None, "error": str(error),
                                    "target": "the case runs", "target_met": False})
            limits, profile_s = bench.finish_case()
            if limits is None:
                limits = ("no process of its own: the peak RSS of cases 1-3's runs (see their "
                          "lines)" if case == 7 else "not profiled (the case failed before "
                          "its btstore command ran)")
            print(f"-- case {case} limited by: {limits}")
            case_seconds[case] = time.perf_counter() - case_start
            print(f"-- case {case} took {case_seconds[case]:.1f} s (the profile run "
                  f"{profile_s:.1f} s), load average {os.getloadavg()[0]:.2f}")
    finally:
        catalogs.close()
        if not args.keep:
            remove_tree(work)
    elapsed = time.perf_counter() - started

    checked = [r for r in report.rows if r.get("target_met") is not None]
    missed = [r for r in checked if r["target_met"] is False]
    budget = QUICK_BUDGET_S if args.quick else FULL_BUDGET_S
    print("\ntime per case: " + ", ".join(f"{c}: {t:.0f} s" for c, t in case_seconds.items()))
    print(f"finished in {elapsed:.0f} s ({settings.mode} run budget {budget} s: "
          f"{'within' if elapsed <= budget else 'OVER'}), load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; targets met: "
          f"{len(checked) - len(missed)} of {len(checked)}")
    for r in missed:
        print(f"  NOT MET: {r['case']}: {r['target']}")
    if args.json_out:
        with open(args.json_out, "w") as out:
            json.dump(report.rows, out, indent=1, default=str)
            out.write("\n")
        print(f"wrote {len(report.rows)} rows to {args.json_out}")


if __name__ == "__main__":
    main()
