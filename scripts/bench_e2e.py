#!/usr/bin/env python3
"""End-to-end throughput: ferry's `rest` connector vs dlt's `rest_api` source, same API, same data.

Run through `scripts/bench.sh e2e` (which builds the release binaries and the venv first).

The API is `bench-api` (bench/src/main.rs): pre-rendered pages of flat ~460-byte
records, cursor and offset paging, on one core. For each paging style, in interleaved rounds:
  ferry      `ferry run` on the embedded engine, rest connector, Parquet to a local directory
  dlt-arrow  dlt's rest_api source, each page turned into a pyarrow Table (dlt's Arrow path),
             filesystem destination, Parquet
  dlt        dlt's rest_api source as it comes (dicts, dlt's normalizer), filesystem, Parquet
Each run is a child process under /usr/bin/time -v: wall time, CPU % (user+sys over wall) and
peak RSS. The rows written are read back with pyarrow and checked: exactly N rows, N distinct
ids. Prints records/s, MB/s (JSON received), CPU %, peak RSS, and ferry ÷ the fastest dlt mode.

Environment: BENCH_RECORDS (1000000), BENCH_PAGE (1000), BENCH_ROUNDS (2), BENCH_TOOLS
(ferry,dlt-arrow,dlt), BENCH_STYLES (cursor,offset), FERRY_BIN, BENCH_API_BIN.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq
import pyarrow.compute as pc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = int(os.environ.get("BENCH_RECORDS", "1000000"))
PAGE = int(os.environ.get("BENCH_PAGE", "1000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
TOOLS = os.environ.get("BENCH_TOOLS", "ferry,dlt-arrow,dlt").split(",")
STYLES = os.environ.get("BENCH_STYLES", "cursor,offset").split(",")
FERRY = os.environ.get("FERRY_BIN", os.path.join(ROOT, "target/release/ferry"))
API = os.environ.get("BENCH_API_BIN", os.path.join(ROOT, "target/release/bench-api"))


def ferry_flow(url, style, out):
    paginator = (
        {"type": "cursor", "token_path": "$.next_cursor", "param": "cursor"}
        if style == "cursor"
        else {"type": "offset", "limit": PAGE, "total_path": "$.total"}
    )
    params = {"limit": str(PAGE)} if style == "cursor" else {}
    flow = {
        "name": f"bench-{style}",
        "source": {
            "connector": "rest",
            "entity": "items",
            "properties": {
                "base_url": url,
                "endpoints": {
                    "items": {
                        "path": "/items",
                        "records": "$.data[*]",
                        "params": params,
                        "primary_key": "id",
                        "paginator": paginator,
                    }
                },
            },
        },
        # Relative to the working directory ferry runs in (the bench's work directory).
        "destination": {"local": os.path.basename(out), "format": "parquet"},
        "trigger": {"on_demand": {}},
    }
    return json.dumps(flow)


DLT_SCRIPT = r"""
import sys, dlt, pyarrow as pa
from dlt.sources.rest_api import rest_api_source
url, style, page, out, mode, work = sys.argv[1:7]
page = int(page)
paginator = ({"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"}
             if style == "cursor" else
             {"type": "offset", "limit": page, "offset_param": "offset", "limit_param": "limit",
              "total_path": "total"})
params = {"limit": page} if style == "cursor" else {}
src = rest_api_source({
    "client": {"base_url": url},
    "resources": [{"name": "items", "endpoint": {"path": "items", "params": params,
                   "data_selector": "data", "paginator": paginator}}],
})
data = src
if mode == "arrow":
    # dlt's Arrow path: every page becomes a pyarrow Table, which dlt writes as Parquet
    # without its row-by-row normalizer.
    @dlt.transformer(data_from=src.resources["items"], name="items_arrow")
    def items_arrow(page_items):
        yield pa.Table.from_pylist(page_items)
    data = items_arrow
p = dlt.pipeline(pipeline_name="bench_" + mode + "_" + style, pipelines_dir=work,
                 destination=dlt.destinations.filesystem(bucket_url="file://" + out),
                 dataset_name="bench")
info = p.run(data, loader_file_format="parquet")
print(info)
"""


def timed(cmd, cwd, env=None):
    """Run cmd under /usr/bin/time -v; return (wall s, cpu %, peak RSS MiB, stdout+stderr)."""
    t = time.monotonic()
    p = subprocess.run(
        ["/usr/bin/time", "-v"] + cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.monotonic() - t
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", p.stderr).group(1))
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", p.stderr).group(1))
    return wall, 100 * (user + sys_) / wall, rss, p.stdout + p.stderr


def check_rows(out):
    files = []
    for d, _, fs in os.walk(out):
        if "/_" in d or "_dlt" in d:
            continue
        files += [os.path.join(d, f) for f in fs if f.endswith(".parquet")]
    n, ids = 0, set()
    for f in files:
        t = pq.read_table(f, columns=["id"])
        n += t.num_rows
        ids.update(t.column("id").to_pylist())
    return n, len(ids)


def run_one(tool, style, url, work, json_bytes):
    out = os.path.join(work, f"out-{tool}-{style}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    if tool == "ferry":
        home = os.path.join(work, f"home-{style}")
        shutil.rmtree(home, ignore_errors=True)
        flow = os.path.join(work, f"bench-{style}.json")
        with open(flow, "w") as f:
            f.write(ferry_flow(url, style, out))
        env = dict(os.environ, FERRY_HOME=home, FERRY_STEP_TIMES="1")
        wall, cpu, rss, log = timed([FERRY, "run", flow], work, env)
    else:
        script = os.path.join(work, "dlt_bench.py")
        with open(script, "w") as f:
            f.write(DLT_SCRIPT)
        mode = "arrow" if tool == "dlt-arrow" else "default"
        dwork = os.path.join(work, f"dlt-{mode}-{style}")
        shutil.rmtree(dwork, ignore_errors=True)
        env = dict(os.environ, RUNTIME__LOG_LEVEL="WARNING")
        wall, cpu, rss, log = timed(
            [sys.executable, script, url, style, str(PAGE), out, mode, dwork], work, env
        )
    rows, distinct = check_rows(out)
    ok = rows == RECORDS and distinct == RECORDS
    steps = [l for l in log.splitlines() if l.startswith("step ")]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "tool": tool,
        "style": style,
        "wall": wall,
        "rps": RECORDS / wall,
        "mbps": json_bytes / 1e6 / wall,
        "cpu": cpu,
        "rss": rss,
        "rows": rows,
        "ok": ok,
        "steps": steps,
    }


def main():
    for b in (FERRY, API):
        if not os.path.exists(b):
            sys.exit(f"{b} is missing: build them with `cargo build --release && cargo build --release -p ferry-bench` (scripts/bench.sh e2e)")
    work = tempfile.mkdtemp(prefix="ferry-bench-")
    api = subprocess.Popen(
        [API, "serve", "--records", str(RECORDS), "--page", str(PAGE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = api.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if not m:
            sys.exit(f"bench-api did not start: {line}{api.stderr.read()}")
        url = m.group(1)
        rendered = api.stderr.readline()
        json_bytes = float(re.search(r"\(([\d.]+) MB", rendered).group(1)) * 1e6
        print(f"bench-api: {rendered.strip()}")
        sel = subprocess.run(
            [API, "selftest", "--records", str(RECORDS), "--page", str(PAGE)],
            capture_output=True,
            text=True,
        )
        print(sel.stdout.strip())
        print(
            f"{RECORDS:,} records, {PAGE}/page, {ROUNDS} interleaved rounds; "
            f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        )
        print(
            f"{'round':>5} {'paging':<7} {'tool':<10} {'seconds':>8} {'records/s':>11} "
            f"{'MB/s':>7} {'CPU %':>6} {'RSS MiB':>8} {'rows':>9}"
        )
        results = []
        for r in range(ROUNDS):
            for style in STYLES:
                for tool in TOOLS:
                    x = run_one(tool, style, url, work, json_bytes)
                    results.append(x)
                    print(
                        f"{r + 1:>5} {style:<7} {tool:<10} {x['wall']:>8.1f} {x['rps']:>11,.0f} "
                        f"{x['mbps']:>7.1f} {x['cpu']:>6.0f} {x['rss']:>8.0f} {x['rows']:>9,}"
                        + ("" if x["ok"] else "  ROWS WRONG"),
                        flush=True,
                    )
                    for s in x["steps"]:
                        print(f"{'':>15}{s}")
        print("\nbest of the rounds, and ferry ÷ dlt's fastest mode:")
        for style in STYLES:
            best = {}
            for x in results:
                if x["style"] == style:
                    b = best.get(x["tool"])
                    if b is None or x["rps"] > b["rps"]:
                        best[x["tool"]] = x
            line = ", ".join(
                f"{t} {b['rps']:,.0f} rec/s ({b['cpu']:.0f}% CPU, {b['rss']:.0f} MiB)"
                for t, b in best.items()
            )
            dlts = [b["rps"] for t, b in best.items() if t.startswith("dlt")]
            ratio = (
                f"; ferry ÷ dlt = {best['ferry']['rps'] / max(dlts):.1f}×"
                if "ferry" in best and dlts
                else ""
            )
            print(f"  {style}: {line}{ratio}")
        if not all(x["ok"] for x in results):
            sys.exit("some run wrote the wrong rows")
    finally:
        api.terminate()
        api.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
