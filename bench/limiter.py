"""What limits a benchmark case now, measured: one extra, untimed run of the case's btstore command
under `perf record`, summarised in one "limited by" line (docs/PERFORMANCE.md, "How to run").

The run records, for the measured operation only (btstore_bench and python_bench.py switch the
recording on and off around it through perf's control FIFOs, see `region` and ProfiledRegion in
btstore_bench.cc; other commands are recorded whole):
- CPU: the time each thread spent on a core, from perf's context switch records
  (`--switch-events`: from a switch in to the next switch out); `cpu-clock` samples at a fixed
  period of CPU time give the functions that use it (samples x period is the CPU time where the
  switch records are not available);
- where the threads wait: the raw_syscalls enter/exit tracepoints of the system calls in
  SYSCALL_CLASSES, paired per thread, summed per class (disk flushes, database, network and pipe
  waits, sleeps, reads, writes, file system metadata, child processes, futex waits between
  threads);
- how long the threads were runnable but waited for a core (the machine's other load): the
  same switch records, from a switch out by preemption to the next switch in.
The line names the largest of the CPU demand (time on a core plus time waiting for one) and the
off-CPU classes (futex waits only when nothing else is large: a thread waiting on a futex waits
for another thread whose time is counted elsewhere) and gives every share, so that a reader can
judge. Timed runs never run under perf.
"""

import collections
import contextlib
import dataclasses
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import time

# The environment variable through which a measured process finds perf's control FIFOs.
CONTROL_ENV = "BTSTORE_PERF_CONTROL"

# x86_64 system call numbers of the waits a case can be limited by.
SYSCALL_CLASSES = {
    "flush": {74: "fsync", 75: "fdatasync", 162: "sync", 277: "sync_file_range", 306: "syncfs",
              26: "msync"},
    "poll/recv": {7: "poll", 271: "ppoll", 23: "select", 270: "pselect6", 232: "epoll_wait",
                  281: "epoll_pwait", 441: "epoll_pwait2", 45: "recvfrom", 47: "recvmsg"},
    "sleep": {35: "nanosleep", 230: "clock_nanosleep"},
    "reads": {0: "read", 17: "pread64", 19: "readv", 295: "preadv", 327: "preadv2"},
    "writes": {1: "write", 18: "pwrite64", 20: "writev", 296: "pwritev", 328: "pwritev2"},
    "metadata": {2: "open", 257: "openat", 3: "close", 4: "stat", 6: "lstat", 262: "newfstatat",
                 332: "statx", 217: "getdents64", 82: "rename", 264: "renameat",
                 316: "renameat2", 83: "mkdir", 258: "mkdirat", 84: "rmdir", 87: "unlink",
                 263: "unlinkat", 86: "link", 265: "linkat"},
    "child": {61: "wait4", 247: "waitid"},
    "futex": {202: "futex", 449: "futex_waitv"},
}
# (The region ends with the "disable" written to perf's FIFO: a `write`, whose start is recorded,
# so the recorded span is the region's wall time.)
CLASS_OF = {nr: name for name, calls in SYSCALL_CLASSES.items() for nr in calls}
# What each class means in the verdict.
CLASS_TEXT = {
    "cpu": "CPU",
    "flush": "disk flush (fsync/fdatasync)",
    "poll/recv": "waits on a database, the network or a pipe (poll, recv)",
    "sleep": "sleeps (poll intervals, SQLite busy waits)",
    "reads": "reads (files, pipes)",
    "writes": "writes (page cache, dirty-page throttling, pipes)",
    "metadata": "file system metadata (open, stat, rename, unlink, mkdir, rmdir)",
    "child": "a child process",
    "futex": "thread/lock waits (futex)",
}
# Below this share of the wall time no wait class names the limit, and futex waits may.
NOTABLE_SHARE = 0.25
SAMPLES_WANTED = 400
# Kernel functions of the profiler itself (recording the syscall events): not btstore's work.
PROFILER_SYMBOLS = ("perf_",)


class LimiterError(RuntimeError):
    """The profile run of a case failed (the case's timed figures stand)."""


@dataclasses.dataclass
class Target:
    """The btstore command of a case to profile: argv, its environment, whether it marks its
    measured operation (btstore_bench, python_bench.py) and how long that took when timed."""
    argv: list
    env: dict = None
    region: bool = True
    expected_s: float = 1.0


@dataclasses.dataclass
class Limits:
    wall_s: float
    cpu_s: float
    samples: int = 0
    wait_s: dict = dataclasses.field(default_factory=dict)  # class -> thread-seconds
    calls: dict = dataclasses.field(default_factory=dict)   # class -> completed calls
    top: list = dataclasses.field(default_factory=list)     # [(symbol, share of samples)]
    runq_s: float = 0.0  # thread-seconds runnable but not running (preempted)
    switches: int = 0  # context switch records seen (0: cpu_s comes from the samples)
    note: str = ""


# ---------------------------------------------------------------------------------------------
# Reading perf script's text

LINE = re.compile(r"^\s*(\d+)\s+(\d+\.\d+):\s+(\S+):\s*(.*)$")
SWITCH = re.compile(r"^\s*(\d+)\s+(\d+\.\d+):\s+PERF_RECORD_SWITCH (IN|OUT)\s*(preempt)?")
ENTER = re.compile(r"^NR (\d+) \(")
EXIT = re.compile(r"^NR (\d+) = ")


def short_symbol(text):
    """A sample's "symbol (dso)" as printed: template arguments and the argument list dropped,
    at most 60 characters; code without a symbol is named by its library."""
    sym, _, dso = text.rpartition(" (")
    sym = sym.strip().replace("(anonymous namespace)", "{anon}")
    if not sym or sym == "[unknown]":
        return "[" + os.path.basename(dso.rstrip(")")) + "]"
    out, depth = [], 0
    for ch in sym:
        after_operator = "".join(out).endswith("operator")
        if ch == "<" and not after_operator:
            out.append("<>" if depth == 0 else "")
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif depth:
            continue
        elif ch == "(" and not after_operator:
            break  # the argument list, e.g. "f(int, long) const" -> "f"
        else:
            out.append(ch)
    name = "".join(out)
    return name if len(name) <= 60 else name[:57] + "..."


def analyse(script_text, period_s):
    """Limits from `perf script --show-switch-events -F trace:tid,time,event,trace
    -F sw:tid,time,event,ip,sym,dso`."""
    first = last = None
    open_calls = {}  # tid -> (nr, time)
    preempted = {}  # tid -> time of its switch out by preemption
    running = {}  # tid -> time it was switched in; None: switched out
    seen = {}  # tid -> time of its last record (a thread's exit leaves no switch out)
    on_cpu_s = 0.0
    runq_s = switches = 0
    wait_s = collections.Counter()
    calls = collections.Counter()
    symbols = collections.Counter()
    samples = 0
    for line in script_text.splitlines():
        m = SWITCH.match(line)
        if m:
            tid, t = int(m.group(1)), float(m.group(2))
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
            switches += 1
            seen[tid] = t
            if m.group(3) == "OUT":
                # A thread whose first record is a switch out ran from the region's start.
                since = running.get(tid, first)
                if since is not None:
                    on_cpu_s += t - since
                running[tid] = None
                if m.group(4):
                    preempted[tid] = t
            else:
                running[tid] = t
                if tid in preempted:
                    runq_s += t - preempted.pop(tid)
            continue
        m = LINE.match(line)
        if not m:
            continue
        tid, t, event, rest = int(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
        first = t if first is None else min(first, t)
        last = t if last is None else max(last, t)
        seen[tid] = t
        if event == "cpu-clock":
            samples += 1
            symbols[short_symbol(rest.split(None, 1)[-1])] += 1  # after the address
            running.setdefault(tid, first)  # running, maybe since before the region
        elif event == "raw_syscalls:sys_enter":
            e = ENTER.match(rest)
            if e:
                open_calls[tid] = (int(e.group(1)), t)
        elif event == "raw_syscalls:sys_exit":
            e = EXIT.match(rest)
            started = open_calls.pop(tid, None)
            if e and started and started[0] == int(e.group(1)) and started[0] in CLASS_OF:
                wait_s[CLASS_OF[started[0]]] += t - started[1]
                calls[CLASS_OF[started[0]]] += 1
    wall = (last - first) if first is not None else 0.0
    on_cpu_s += sum(seen[tid] - since for tid, since in running.items() if since is not None)
    ranked = [(sym, n) for sym, n in symbols.most_common() if not sym.startswith(PROFILER_SYMBOLS)]
    top = [(sym, n / samples) for sym, n in ranked[:3]]
    return Limits(wall_s=wall, cpu_s=on_cpu_s if switches else samples * period_s,
                  samples=samples, wait_s=dict(wait_s), calls=dict(calls), top=top,
                  runq_s=runq_s, switches=switches)


# ---------------------------------------------------------------------------------------------
# The verdict


def verdict(limits):
    """(class, share of the wall time) of what limits the run: the largest of CPU (in cores)
    and the wait classes other than futex; futex waits only when nothing else reaches
    NOTABLE_SHARE."""
    if limits.wall_s <= 0:
        return None, 0.0
    shares = {"cpu": (limits.cpu_s + limits.runq_s) / limits.wall_s}
    shares.update({c: s / limits.wall_s for c, s in limits.wait_s.items()})
    futex = shares.pop("futex", 0.0)
    name = max(shares, key=shares.get)
    if shares[name] < NOTABLE_SHARE and futex > shares[name]:
        return "futex", futex
    return name, shares[name]


def summarise(limits, cores):
    """The "limited by" line of one profiled run."""
    if limits.wall_s <= 0:
        return "nothing recorded" + (f" ({limits.note})" if limits.note else "")
    name, share = verdict(limits)
    busy = limits.cpu_s / limits.wall_s
    queued = limits.runq_s / limits.wall_s
    if name == "cpu":
        head = f"CPU ({busy:.2f} of {cores} cores busy, {queued:.2f} more waiting for a core)"
    else:
        n = limits.calls.get(name, 0)
        head = (f"{CLASS_TEXT[name]} ({share:.0%} of the wall time, summed over threads; "
                f"{n:,} calls, {1e3 * limits.wait_s[name] / max(n, 1):.2f} ms each)")
    parts = [head]
    if limits.top:
        parts.append("top: " + ", ".join(f"{sym} {frac:.0%}" for sym, frac in limits.top))
    elif limits.note:
        parts.append(limits.note)
    waits = [(c, limits.wait_s.get(c, 0.0) / limits.wall_s) for c in SYSCALL_CLASSES]
    parts.append(", ".join([f"cpu {busy:.2f} cores", f"run queue {queued:.0%}"] +
                           [f"{c} {share:.0%}" for c, share in waits if share >= 0.005]))
    parts.append(f"over {limits.wall_s:.3g} s, {limits.samples:,} samples"
                 if limits.samples else f"over {limits.wall_s:.3g} s")
    if limits.top and limits.note:
        parts.append(limits.note)
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------------
# Running


def period_for(expected_s):
    """The sampling period (seconds of CPU time): about SAMPLES_WANTED samples per second of the
    operation, between 100 us (10,000 samples/s, well under perf's default limit, so that perf
    does not throttle) and 2 ms."""
    return min(max(expected_s / SAMPLES_WANTED, 100e-6), 2e-3)


def tracepoint_filter():
    ids = sorted(CLASS_OF)
    return " || ".join(f"id == {nr}" for nr in ids)


class Limiter:
    """Profiles Targets; finds out once whether perf (and its syscall tracepoints) works here."""

    def __init__(self, scratch):
        self.scratch = scratch
        self.perf = shutil.which("perf")
        self.syscalls = False
        self.unavailable = None
        if self.perf is None:
            self.unavailable = "perf not found"
        elif platform.machine() != "x86_64":
            self.unavailable = f"syscall numbers known for x86_64 only, not {platform.machine()}"
        else:
            self.syscalls = self._works(self._events(1e-3, syscalls=True))
            if not self.syscalls and not self._works(self._events(1e-3, syscalls=False)):
                self.unavailable = "perf record does not work here (perf_event_paranoid?)"

    def _events(self, period_s, syscalls):
        events = ["-e", "cpu-clock", "-c", str(max(1, int(period_s * 1e9)))]
        if syscalls:
            events.append("--switch-events")
            for tp in ("raw_syscalls:sys_enter", "raw_syscalls:sys_exit"):
                events += ["-e", tp, "--filter", tracepoint_filter()]
        return events

    def _works(self, events):
        out = os.path.join(self.scratch, "perf-probe.data")
        try:
            probe = subprocess.run([self.perf, "record", "-q", "-o", out, *events, "--", "true"],
                                   capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        finally:
            if os.path.exists(out):
                os.remove(out)
        return probe.returncode == 0

    def measure(self, target, timeout, record_s=None):
        """Limits of one extra run of `target` (perf when it works, else CPU and wall only).
        With `record_s`, recording stops after that many seconds (perf ends the command and
        keeps what it recorded); `timeout` stops everything, as an error."""
        if self.unavailable:
            return self._plain(target, timeout)
        period = period_for(target.expected_s)
        with tempfile.TemporaryDirectory(dir=self.scratch, prefix="perf-") as tmp:
            data = os.path.join(tmp, "perf.data")
            cmd = [self.perf, "record", "-o", data, *self._events(period, self.syscalls)]
            env = dict(target.env if target.env is not None else os.environ)
            if target.region:
                ctl, ack = os.path.join(tmp, "ctl"), os.path.join(tmp, "ack")
                os.mkfifo(ctl)
                os.mkfifo(ack)
                cmd += ["-D", "-1", "--control", f"fifo:{ctl},{ack}"]
                env[CONTROL_ENV] = f"{ctl},{ack}"
            stopped, _ = _run(cmd + ["--", *target.argv], env, timeout, record_s)
            script = subprocess.run(
                [self.perf, "script", "-i", data, "--show-switch-events",
                 "-F", "trace:tid,time,event,trace",
                 "-F", "sw:tid,time,event,ip,sym,dso"],
                capture_output=True, text=True, timeout=timeout)
            if script.returncode != 0:
                raise LimiterError(f"perf script: {script.stderr[-500:]}")
        limits = analyse(script.stdout, period)
        notes = []
        if not self.syscalls:
            notes.append("syscall tracepoints or switch events not available: no wait breakdown")
        if stopped:
            notes.append(f"recording stopped after {record_s:.0f} s")
        limits.note = "; ".join(notes)
        return limits

    def _plain(self, target, timeout):
        started = time.perf_counter()
        _, usage = _run(list(target.argv), target.env, timeout)
        wall = time.perf_counter() - started
        return Limits(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
                      note=f"{self.unavailable}: CPU and wall of the whole process only")


def _run(cmd, env, timeout, record_s=None):
    """Run `cmd` in its own process group, killed whole at `timeout`. At `record_s` (perf
    record) it gets SIGINT: perf then ends its command and writes what it recorded. Returns
    whether that happened."""
    stopped = False
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
        started = time.monotonic()
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if record_s is not None and not stopped and time.monotonic() > started + record_s:
                proc.send_signal(signal.SIGINT)
                stopped = True
            if time.monotonic() > started + timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                proc.returncode = -signal.SIGKILL
                raise LimiterError(f"the profile run took over {timeout:.0f} s and was stopped")
            time.sleep(0.02)
        if proc.returncode != 0 and not stopped:
            err.seek(0)
            raise LimiterError(f"{os.path.basename(cmd[0])} exited {proc.returncode}: "
                               f"{err.read().decode(errors='replace')[-500:]}")
    return stopped, usage


@contextlib.contextmanager
def region():
    """The measured operation of a Python benchmark process (python_bench.py): recorded alone
    when the process runs under Limiter.measure, a no-op otherwise (ProfiledRegion in C++)."""
    control = os.environ.get(CONTROL_ENV)
    if not control:
        yield
        return
    ctl, ack = control.split(",")
    ctl_fd, ack_fd = os.open(ctl, os.O_WRONLY), os.open(ack, os.O_RDONLY)

    def send(command):
        os.write(ctl_fd, command.encode() + b"\n")
        if not os.read(ack_fd, 16):
            raise LimiterError(f"perf did not acknowledge {command}")

    send("enable")
    try:
        yield
    finally:
        send("disable")
        os.close(ctl_fd)
        os.close(ack_fd)
