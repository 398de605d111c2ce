#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/ (docs/TESTING.md).

    .venv/bin/python tests/fuzz/make_corpus.py build/btstore

Seeds are named seed-*; crash inputs kept as regressions (named after what they reproduce) are
left alone. The bundle seeds come from `btstore bundle sample` (btstore's own writer) and from
pyarrow with other writer settings, packed in the input format of bundle_fuzz.cc: one option
byte, then each file as a line "%%file NAME" followed by its bytes.
"""

import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

CORPUS = Path(__file__).resolve().parent / "corpus"

# Option bits of bundle_fuzz.cc.
INSPECT, NO_CHECKSUMS, FROM, TO, COLUMNS, REQUIRED_SUBSET, WITH_PORTFOLIO = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40)


def pack(files, options):
    """One bundle_fuzz input: the option byte, then "%%file NAME\\n" + bytes per entry."""
    parts = []
    for name, data in files:
        parts.append(b"%%file " + name.encode() + b"\n" + data)
    return bytes([options]) + b"\n".join(parts)


def bundle_files(directory):
    return [(p.name, p.read_bytes()) for p in sorted(Path(directory).iterdir())]


def without_manifest(files):
    out = []
    for name, data in files:
        if name == "summary.json":
            doc = json.loads(data)
            doc.pop("artifacts", None)
            data = json.dumps(doc).encode()
        out.append((name, data))
    return out


def parquet_bytes(table, **options):
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return sink.getvalue().to_pybytes()


def python_bundle(days=6, symbols=3, **options):
    """A bundle as the platform's Python tools write it: no manifest, NaN tokens, extra tables."""
    dates, permnos, values = [], [], []
    for d in range(days):
        for s in range(symbols):
            dates.append(18262 + d)  # 2020-01-01 + d
            permnos.append(10000 + s)
            values.append([0.5, float("nan"), None, float("inf"), -1.25][(d + s) % 5])
    date = pa.array(dates, pa.date32())
    signals = pa.table({"date": date, "permno": pa.array(permnos, pa.int64()),
                        "signal": pa.array(values, pa.float64())})
    weights = pa.table({"date": date, "permno": pa.array(permnos, pa.int64()),
                        "weight": pa.array([v if v is None or math.isfinite(v) else 0.0
                                            for v in values], pa.float64())})
    ic_dates = pa.array([18262 + d for d in range(days)], pa.date32())
    ic = pa.table({"date": ic_dates, "ic": pa.array([0.01 * d for d in range(days)]),
                   "rank_ic": pa.array([None] + [0.02] * (days - 1), pa.float64())})
    portfolio = pa.table({"date": ic_dates, "return": pa.array([0.001] * days)})
    nested = pa.table({"date": ic_dates,
                       "tags": pa.array([["a", "b"]] * days, pa.list_(pa.string())),
                       "info": pa.array([{"n": d, "s": str(d)} for d in range(days)])})
    summary = ('{"snapshot_id": "snap-1", "dataset_version_ids": {"prices": "v3"}, '
               '"hit_rate": NaN, "coverage": Infinity, "long_short_spread": -Infinity, '
               '"cost_config": {"bps": 5}, "has_walk_forward": false}').encode()
    return [
        ("daily_ic.parquet", parquet_bytes(ic, **options)),
        ("daily_portfolio_returns.parquet", parquet_bytes(portfolio, **options)),
        ("daily_signals.parquet", parquet_bytes(signals, **options)),
        ("daily_weights.parquet", parquet_bytes(weights, **options)),
        ("extra_nested.parquet", parquet_bytes(nested, **options)),
        ("summary.json", summary),
    ]


def write(target, name, data):
    path = CORPUS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def bundle_seeds(btstore):
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample"
        subprocess.run([btstore, "bundle", "sample", str(sample), "--days", "8", "--symbols", "3"],
                       check=True, stdout=subprocess.DEVNULL)
        files = bundle_files(sample)
        zstd = Path(tmp) / "zstd"
        subprocess.run([btstore, "bundle", "sample", str(zstd), "--days", "5", "--symbols", "2",
                        "--compression", "zstd"], check=True, stdout=subprocess.DEVNULL)
        zstd_files = bundle_files(zstd)
    bare = without_manifest(files)
    write("bundle", "seed-btstore-manifest", pack(files, 0))
    write("bundle", "seed-btstore-manifest-range", pack(files, FROM | TO))
    write("bundle", "seed-btstore-manifest-inspect", pack(files, INSPECT))
    write("bundle", "seed-btstore-zstd", pack(without_manifest(zstd_files), 0))
    write("bundle", "seed-btstore-bare", pack(bare, NO_CHECKSUMS))
    write("bundle", "seed-btstore-bare-columns", pack(bare, FROM | COLUMNS))
    write("bundle", "seed-btstore-bare-subset", pack(bare, REQUIRED_SUBSET | TO))
    write("bundle", "seed-btstore-directory-entry",
          pack([f for f in bare if f[0] != "daily_ic.parquet"] + [("daily_ic.parquet/", b"")], 0))
    write("bundle", "seed-python-plain", pack(python_bundle(), WITH_PORTFOLIO))
    write("bundle", "seed-python-row-groups",
          pack(python_bundle(row_group_size=4, compression="none", data_page_version="2.0"),
               FROM | TO))
    write("bundle", "seed-python-dictionary-gzip",
          pack(python_bundle(use_dictionary=True, compression="gzip", write_statistics=False),
               INSPECT))
    write("bundle", "seed-python-lz4-columns",
          pack(python_bundle(compression="lz4", write_statistics=False), COLUMNS | TO))
    wrong = python_bundle()
    table = pq.read_table(pa.BufferReader(wrong[2][1]))
    wrong[2] = ("daily_signals.parquet",
                parquet_bytes(table.set_column(2, "signal", table["signal"].cast(pa.float32()))))
    write("bundle", "seed-python-wrong-type", pack(wrong, 0))


SUMMARIES = {
    "minimal": '{"snapshot_id": "s", "dataset_version_ids": {}}',
    "python-tokens": '{"snapshot_id": "snap", "dataset_version_ids": {"prices": "v1"}, '
                     '"mean_ic": NaN, "icir": Infinity, "hit_rate": -Infinity, '
                     '"note": "NaN and Infinity inside a string \\" stay"}',
    "platform": json.dumps({
        "snapshot_id": "snap-2026-11-01", "dataset_version_ids": {"crsp": "7", "fund": "2"},
        "mean_ic": 0.031, "icir": 1.7, "hit_rate": 0.55, "coverage": 0.98,
        "long_short_spread": 0.0012, "average_turnover": 0.21, "decay_half_life": None,
        "cost_config": {"bps": 5, "model": "linear"}, "cost_summary": {"drag": 0.001},
        "data_signature": "abc", "has_walk_forward": True, "walk_forward_windows": 4,
        "walk_forward_overfit": 0.1, "capacity_analysis": [1, 2.5, None]}),
    "written": json.dumps({
        "schema_version": 1, "job_id": "bt-0123", "alpha_name": "momentum",
        "start_date": "2020-01-01", "end_date": "2020-12-31", "weight_method": "signal",
        "config_hash": "sha256:00", "snapshot_id": "synthetic-v1",
        "dataset_version_ids": {"synthetic": "1"}, "mean_ic": 5e-324, "icir": -0.0,
        "hit_rate": 1.7976931348623157e308, "written_at": "2026-11-24T13:05:09.123456Z",
        "writer": {"name": "btstore", "version": "0.1.0"},
        "artifacts": {"daily_ic.parquet": {"rows": 3, "bytes": 1024,
                                           "checksum": "xxh3-128:00112233445566778899aabbccddeeff"},
                      "daily_signals.parquet": {"rows": 0, "bytes": 0, "checksum": None}}},
        indent=2),
    "no-snapshot": '{"dataset_version_ids": {"a": "b"}, "mean_ic": 1}',
    "bad-manifest": '{"snapshot_id": "s", "dataset_version_ids": {"a": "b"}, '
                    '"artifacts": {"x.parquet": {"rows": -1, "bytes": "2"}}}',
    "unicode": '{"snapshot_id": "\\u00e9t\\u00e9 \\ud83d\\ude00 caf\u00e9", '
               '"dataset_version_ids": {"\\u0000k": "v\\n"}, "start_date": "2020-02-29"}',
    "not-object": '[{"snapshot_id": "s"}]',
}

LISTINGS = {
    # user, alpha, statuses, created-from, created-to, from, to, min-mean-ic, min-icir,
    # min-hit-rate, limit, offset, cursor
    "everything": "\n".join(["", "", "", "", "", "", "", "", "", "", "", "", ""]),
    "filters": "\n".join(["alice", "momentum", "completed,failed,pending", "2026-11-01",
                          "2026-11-01T09:30:00.5+02:00", "2020-02-01", "2020-06-30", "-0.05",
                          "0", "0.5", "3", "", ""]),
    "cursor": "\n".join(["", "", "running,cancelled", "2026-11-01 03:00:00+00", "",
                         "", "", "", "", "", "2", "",
                         "c1.5f4f4b9a4e400.0d1f2c3b-4a5b-4c6d-8e7f-8091a2b3c4d5"]),
    "offset": "\n".join(["bob", "", "", "", "2026-11-01t05:00:00z", "", "", "", "", "",
                         "1000", "7", ""]),
    "bad-values": "\n".join(["", "", "done", "2026-13-01", "2026-11-01T25:00:00Z",
                             "2020-02-30", "0000-01-01", "nan", "inf", "-inf", "0",
                             "-1", "c1.zz.not-a-uuid"]),
}

CONFIGS = {
    # alpha, start, end, weight method, user, job_id, job_timeout, then the config JSON
    "synthetic": "momentum\n2020-01-01\n2020-12-31\nsignal\nalice\n\n3600\n"
                 '{"engine": "synthetic", "seed": 7, "symbols": 500, "delay_ms_per_day": 0, '
                 '"checkpoint_every_days": 20, "fail_at_day": null, "snapshot_id": "synthetic-v1"}',
    "noop": "reversal\n2021-03-01\n2021-03-31\nzscore\nbob\nmy-job.1\n300\n"
            '{"engine": "noop", "extra": [1, 2.5e10, {"nested": "\\u00e9"}]}',
    "defaults": "a\n\n\nequal\nu\n\n\n{}",
    "bad-types": "x\n2020-01-01\n2019-12-31\nrank\nu\n\n99999\n"
                 '{"seed": -1, "symbols": "500", "fail_at_day": 1.5}',
    "unknown-engine": "x\n2020-01-01\n2020-01-02\nequal\nu\n.hidden\n\n"
                      '{"engine": "quantum", "seed": 18446744073709551615}',
}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    btstore = sys.argv[1]
    for target in ("summary", "bundle", "listing", "config"):
        for old in (CORPUS / target).glob("seed-*"):
            old.unlink()
    bundle_seeds(btstore)
    for name, text in SUMMARIES.items():
        write("summary", "seed-" + name + ".json", text)
    for name, text in LISTINGS.items():
        write("listing", "seed-" + name, text)
    for name, text in CONFIGS.items():
        write("config", "seed-" + name, text)


if __name__ == "__main__":
    main()
