"""A generic reader that knows nothing of ferry: it takes a table as a data catalog describes it
(location, format, SerDe settings, columns and their types, partition keys, partitions or
partition projection) and reads the files with DuckDB, the way Athena would.

usage: catalog_read.py SPEC.json
SPEC: {"root": local mirror of the bucket, "table": ferry's CatalogTable (as read from Glue),
       "partitions": [{"values": [...], "location": "s3://..."}]}
prints {"types": {column: duckdb type}, "rows": [{column: value}], "partitions_read": n}
"""

import datetime
import json
import os
import sys

import duckdb

spec = json.load(open(sys.argv[1]))
root = spec["root"]
table = spec["table"]
params = table["parameters"]


def local(location):
    assert location.startswith("s3://"), location
    _bucket, _, key = location[5:].partition("/")
    return os.path.join(root, key)


def split_top(s):
    parts, depth, cur = [], 0, ""
    for c in s:
        if c in "<(":
            depth += 1
        if c in ">)":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return parts


SCALARS = {
    "string": "VARCHAR", "bigint": "BIGINT", "int": "INTEGER", "smallint": "SMALLINT",
    "tinyint": "TINYINT", "double": "DOUBLE", "float": "FLOAT", "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP", "date": "DATE", "binary": "BLOB",
}


def duck(t):
    """A Hive/Glue type as a DuckDB type."""
    t = t.strip()
    if t.startswith("struct<"):
        fields = [f.split(":", 1) for f in split_top(t[7:-1])]
        return "STRUCT(" + ", ".join(f'"{n}" {duck(ty)}' for n, ty in fields) + ")"
    if t.startswith("array<"):
        return duck(t[6:-1]) + "[]"
    if t.startswith("map<"):
        k, v = split_top(t[4:-1])
        return f"MAP({duck(k)}, {duck(v)})"
    if t.startswith("decimal"):
        return t.upper()
    return SCALARS[t]


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def java_to_strftime(f):
    for a, b in (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M")):
        f = f.replace(a, b)
    return f


def step(t, unit):
    if unit == "YEARS":
        return t.replace(year=t.year + 1)
    if unit == "MONTHS":
        return t.replace(year=t.year + t.month // 12, month=t.month % 12 + 1)
    return t + {"DAYS": datetime.timedelta(days=1), "HOURS": datetime.timedelta(hours=1),
                "MINUTES": datetime.timedelta(minutes=1)}[unit]


def projected_values(name):
    kind = params[f"projection.{name}.type"]
    lo, hi = params[f"projection.{name}.range"].split(",")
    if kind == "integer":
        return [str(v) for v in range(int(lo), int(hi) + 1)]
    assert kind == "date", kind
    fmt = java_to_strftime(params[f"projection.{name}.format"])
    unit = params[f"projection.{name}.interval.unit"]
    t = datetime.datetime.strptime(lo, fmt)
    end = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) if hi == "NOW" \
        else datetime.datetime.strptime(hi, fmt)
    out = []
    while t <= end:
        out.append(t.strftime(fmt))
        t = step(t, unit)
    return out


keys = table["partition_keys"]
if params.get("projection.enabled") == "true":
    template = params["storage.location.template"]
    combos = [{}]
    for k in keys:
        combos = [dict(c, **{k["name"]: v}) for c in combos for v in projected_values(k["name"])]
    parts = []
    for c in combos:
        loc = template
        for n, v in c.items():
            loc = loc.replace("${" + n + "}", v)
        parts.append(([c[k["name"]] for k in keys], loc))
elif keys:
    parts = [(p["values"], p["location"]) for p in spec["partitions"]]
else:
    parts = [([], table["storage"]["location"])]


def files_under(d):
    """Every file under d, skipping `_` and `.` folders and files (as Hive and Athena do)."""
    out = []
    for cur, dirs, names in os.walk(d):
        dirs[:] = sorted(x for x in dirs if not x.startswith(("_", ".")))
        out += [os.path.join(cur, n) for n in sorted(names) if not n.startswith(("_", "."))]
    return out


con = duckdb.connect()
# Partition values come from the catalog, never from folder names (DuckDB would otherwise read
# `country=null/` as the text 'null' in place of the file's own column).
con.execute("SET TimeZone = 'UTC'")
fmt = params["classification"]
serde = table["storage"]["serde_parameters"]
cols = table["columns"]
columns_struct = "{" + ", ".join(f"{lit(c['name'])}: {lit(duck(c['type']))}" for c in cols) + "}"
rows, types, read = [], None, 0
for values, location in parts:
    files = files_under(local(location))
    if not files:
        continue
    read += 1
    flist = "[" + ", ".join(lit(f) for f in files) + "]"
    if fmt == "parquet":
        rel = f"read_parquet({flist}, union_by_name = true, hive_partitioning = false)"
        have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()}
        select = [
            f'CAST("{c["name"]}" AS {duck(c["type"])}) AS "{c["name"]}"' if c["name"] in have
            else f'CAST(NULL AS {duck(c["type"])}) AS "{c["name"]}"'
            for c in cols
        ]
    elif fmt == "csv":
        header = params.get("skip.header.line.count", "0") != "0"
        rel = (f"read_csv({flist}, header = {str(header).lower()}, delim = {lit(serde['separatorChar'])}, "
               f"quote = {lit(serde['quoteChar'])}, escape = {lit(serde['escapeChar'])}, "
               f"columns = {columns_struct}, null_padding = true, auto_detect = false, "
               f"hive_partitioning = false)")
        select = [f'"{c["name"]}"' for c in cols]
    else:
        assert fmt == "json", fmt
        rel = (f"read_json({flist}, format = 'newline_delimited', columns = {columns_struct}, "
               f"hive_partitioning = false)")
        select = [f'"{c["name"]}"' for c in cols]
    for k, v in zip(keys, values):
        value = "NULL" if v == "__HIVE_DEFAULT_PARTITION__" else lit(v)
        select.append(f'CAST({value} AS {duck(k["type"])}) AS "{k["name"]}"')
    r = con.sql(f"SELECT {', '.join(select)} FROM {rel}")
    types = {n: str(t) for n, t in zip(r.columns, r.types)}
    rows += [dict(zip(r.columns, row)) for row in r.fetchall()]
print(json.dumps({"types": types or {}, "rows": rows, "partitions_read": read}, default=str))
