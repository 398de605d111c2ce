"""bench/limiter.py: reading perf's records into what limits a case, and the line it prints;
then real profile runs of a Python process and of btstore_bench's measured region."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import limiter  # noqa: E402

# What `perf script --show-switch-events -F trace:tid,time,event,trace
# -F sw:tid,time,event,ip,sym,dso` prints, for two threads of one process over 0.1 s.
SCRIPT = """\
   100   10.000000:  raw_syscalls:sys_exit: NR 0 = 4
   100   10.001000:              cpu-clock:  7f00aa XXH3_hashLong_128b (/b/libbtstore.so)
   100   10.002000:              cpu-clock:  7f00ab XXH3_hashLong_128b (/b/libbtstore.so)
   100   10.003000:              cpu-clock:  7f00ac arrow::(anonymous namespace)::Foo<std::vector<long> >::Bar(int) const (/w/a.so)
   100   10.004000: raw_syscalls:sys_enter: NR 74 (3, 0, 0, 0, 0, 0)
   100   10.004001: PERF_RECORD_SWITCH OUT
   101   10.005000:              cpu-clock:  7f00ad [unknown] (/w/libparquet.so.2600)
   101   10.006000: raw_syscalls:sys_enter: NR 202 (7f, 80, 0, 0, 0, 0)
   101   10.006001: PERF_RECORD_SWITCH OUT
   100   10.033999: PERF_RECORD_SWITCH IN
   100   10.034000:  raw_syscalls:sys_exit: NR 74 = 0
   100   10.040000: raw_syscalls:sys_enter: NR 7 (5, 1, ffffffff, 0, 0, 0)
   100   10.060000:  raw_syscalls:sys_exit: NR 7 = 1
   100   10.061000: PERF_RECORD_SWITCH OUT preempt
   101   10.069999: PERF_RECORD_SWITCH IN
   101   10.070000:  raw_syscalls:sys_exit: NR 202 = 0
   100   10.071000: PERF_RECORD_SWITCH IN
   100   10.072000:              cpu-clock:  ffffffff8223 clear_page_erms ([kernel.kallsyms])
   100   10.099000: raw_syscalls:sys_enter: NR 1 (9, 7ffc, 8, 0, 0, 0)
"""


def test_analyse_sums_cpu_waits_and_run_queue_per_class():
    limits = limiter.analyse(SCRIPT, period_s=0.001)
    assert limits.wall_s == pytest.approx(0.099)  # first to last record: the region
    assert limits.samples == 5
    # On a core, from the switch records: thread 100 from the region's start to 10.004001,
    # 10.033999-10.061 and 10.071 to its last record (10.099, it exits without a switch out);
    # thread 101 to 10.006001 and 10.069999-10.070.
    assert limits.cpu_s == pytest.approx(0.065004)
    # fsync 30 ms, poll 20 ms, futex 64 ms; the read whose start was not recorded and the
    # write (recorded for the span only) count nowhere.
    assert limits.wait_s == pytest.approx({"flush": 0.030, "poll/recv": 0.020, "futex": 0.064})
    assert limits.calls == {"flush": 1, "poll/recv": 1, "futex": 1}
    # Only the switch out by preemption counts as waiting for a core: 10.061 -> 10.071.
    assert limits.runq_s == pytest.approx(0.010)
    assert limits.top[0] == ("XXH3_hashLong_128b", pytest.approx(0.4))
    assert [sym for sym, _ in limits.top[1:]] == ["arrow::{anon}::Foo<>::Bar",
                                                  "[libparquet.so.2600]"]


def test_without_switch_records_cpu_time_is_samples_times_period():
    no_switches = "\n".join(line for line in SCRIPT.splitlines() if "SWITCH" not in line)
    limits = limiter.analyse(no_switches, period_s=0.001)
    assert limits.cpu_s == pytest.approx(0.005)
    assert limits.runq_s == 0


def test_short_symbol_drops_arguments_and_names_unknown_code_by_library():
    assert limiter.short_symbol("std::function<void (int)>::operator()(int) const (/x/a.so)") \
        == "std::function<>::operator()"
    assert limiter.short_symbol("[unknown] (/usr/lib/libz.so.1)") == "[libz.so.1]"
    long_name = "ns::" + "x" * 80 + "(int) (/a.so)"
    assert len(limiter.short_symbol(long_name)) == 60


def test_verdict_names_the_largest_share_and_futex_only_when_nothing_else_is_large():
    flush = limiter.Limits(wall_s=1.0, cpu_s=0.2, wait_s={"flush": 0.7, "futex": 1.5})
    assert limiter.verdict(flush) == ("flush", pytest.approx(0.7))
    # Waiting for a core is demand for CPU.
    cpu = limiter.Limits(wall_s=1.0, cpu_s=0.3, runq_s=0.5, wait_s={"flush": 0.6})
    assert limiter.verdict(cpu) == ("cpu", pytest.approx(0.8))
    locks = limiter.Limits(wall_s=1.0, cpu_s=0.1, wait_s={"sleep": 0.2, "futex": 0.9})
    assert limiter.verdict(locks) == ("futex", pytest.approx(0.9))


def test_summarise_prints_the_limit_the_top_functions_and_every_share():
    line = limiter.summarise(limiter.analyse(SCRIPT, period_s=0.001), cores=2)
    assert line.startswith("CPU (0.66 of 2 cores busy, 0.10 more waiting for a core) | ")
    assert "top: XXH3_hashLong_128b 40%, arrow::{anon}::Foo<>::Bar 20%" in line
    # Classes under 0.5% are left out.
    assert "| cpu 0.66 cores, run queue 10%, flush 30%, poll/recv 20%, futex 65% |" in line
    flush = limiter.Limits(wall_s=0.1, cpu_s=0.01, wait_s={"flush": 0.06}, calls={"flush": 3})
    assert limiter.summarise(flush, cores=2).startswith(
        "disk flush (fsync/fdatasync) (60% of the wall time, summed over threads; 3 calls, "
        "20.00 ms each) | cpu 0.10 cores")
    unavailable = limiter.Limits(wall_s=2.0, cpu_s=1.0, note="perf not found: CPU and wall only")
    assert limiter.summarise(unavailable, cores=2).startswith(
        "CPU (0.50 of 2 cores busy, 0.00 more waiting for a core) | perf not found")


def test_period_keeps_the_sample_rate_within_perf_limits():
    assert limiter.period_for(0.004) == pytest.approx(100e-6)
    assert limiter.period_for(0.2) == pytest.approx(0.5e-3)
    assert limiter.period_for(60) == pytest.approx(2e-3)


def test_region_is_a_no_op_outside_a_profile_run(monkeypatch):
    monkeypatch.delenv(limiter.CONTROL_ENV, raising=False)
    with limiter.region():
        pass


def test_a_python_process_profiled_for_its_region_only(tmp_path):
    """Ten fsyncs inside the region and ten outside it: perf, when it works here, counts ten;
    where it does not, the line says so and gives CPU and wall of the whole process."""
    code = (f"import os, limiter\n"
            f"fd = os.open({str(tmp_path / 'f')!r}, os.O_WRONLY | os.O_CREAT)\n"
            f"def flush():\n"
            f"    for _ in range(10):\n"
            f"        os.write(fd, b'x' * 4096)\n"
            f"        os.fsync(fd)\n"
            f"flush()\n"
            f"with limiter.region():\n"
            f"    flush()\n"
            f"    sum(i * i for i in range(300000))\n")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(limiter.__file__)}
    lim = limiter.Limiter(str(tmp_path))
    limits = lim.measure(limiter.Target([sys.executable, "-c", code], env, expected_s=0.2), 120)
    if lim.unavailable:
        assert lim.unavailable in limits.note and limits.wall_s > 0
    else:
        assert lim.syscalls, "perf works, but not its syscall tracepoints or switch records"
        assert limits.calls["flush"] == 10
        assert limits.samples > 0
        assert "flush" in limiter.summarise(limits, cores=2)


def test_recording_stops_at_its_limit_and_keeps_what_it_recorded(tmp_path):
    code = (f"import os, time\n"
            f"fd = os.open({str(tmp_path / 'f')!r}, os.O_WRONLY | os.O_CREAT)\n"
            f"while True:\n"
            f"    os.write(fd, b'x')\n"
            f"    os.fsync(fd)\n"
            f"    time.sleep(0.01)\n")
    lim = limiter.Limiter(str(tmp_path))
    target = limiter.Target([sys.executable, "-c", code], region=False)
    if lim.unavailable:
        with pytest.raises(limiter.LimiterError, match="took over 2 s"):
            lim.measure(target, timeout=2)
    else:
        limits = lim.measure(target, timeout=60, record_s=1)
        assert limits.note == "recording stopped after 1 s"
        assert limits.calls["flush"] > 0 and limits.calls["sleep"] > 0


def test_a_failing_profile_run_is_a_named_error(tmp_path):
    lim = limiter.Limiter(str(tmp_path))
    with pytest.raises(limiter.LimiterError, match="exited 3"):
        lim.measure(limiter.Target([sys.executable, "-c", "raise SystemExit(3)"],
                                   region=False), 120)


def test_btstore_bench_marks_its_measured_write(tmp_path):
    """btstore_bench's ProfiledRegion switches perf on around the write (perf starts with
    recording off), and the bundle's flushes (its files and directories) are seen in it."""
    exe = os.environ["BTSTORE_BENCH"]
    lim = limiter.Limiter(str(tmp_path))
    argv = [exe, "write", "--mode", "btstore", "--out", str(tmp_path / "out"), "--days", "20",
            "--symbols", "10"]
    limits = lim.measure(limiter.Target(argv, dict(os.environ), expected_s=0.05), 120)
    assert (tmp_path / "out" / "summary.json").exists()
    if lim.unavailable:
        assert lim.unavailable in limits.note
    else:
        assert limits.calls.get("flush", 0) >= 4
        assert limits.wall_s > 0
