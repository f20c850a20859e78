//! The embedded engine's catalog: `ferry run` registers the table in
//! `$FERRY_HOME/catalog/<database>/<table>.json`; `ferry catalog show` prints it, `ferry
//! catalog sync` rebuilds it from the manifests, `ferry query` runs SQL over the committed
//! files with the DuckDB command line (or says how to get it).

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn ferry(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.args(args)
        .current_dir(dir)
        .env("FERRY_HOME", dir.join(".ferry"))
        .env_remove("FERRY_LOG")
        .env_remove("FERRY_REMOTE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const FLOW: &str = r#"name: local-crm
source:
  connector: sample
  entity: accounts
  properties: { records: 120, as_of: "2026-01-01T00:00:00Z" }
  incremental: { field: updated_at, first_execution_from: 2000-01-01T00:00:00Z }
destination:
  local: out
  format: parquet
  layout: { partition_by: [country] }
  catalog: { database: lake, create_database: true }
"#;

#[test]
fn run_show_sync_and_query_the_local_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("flow.yaml"), FLOW).unwrap();
    let o = ferry(d, &["run", "flow.yaml"], &[]);
    assert!(o.status.success(), "{}", text(&o));

    let file = d.join(".ferry/catalog/lake/local_crm.json");
    assert!(file.is_file(), "{}", file.display());
    let o = ferry(d, &["--json", "catalog", "show", "local-crm"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = &v["table"];
    assert_eq!(t["parameters"]["classification"], "parquet");
    assert_eq!(t["partition_keys"][0]["name"], "country");
    let cols: Vec<(&str, &str)> = t["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert!(
        cols.contains(&("annual_revenue", "decimal(18,2)")),
        "{cols:?}"
    );
    assert!(!cols.iter().any(|(n, _)| *n == "country"));
    let location = t["storage"]["location"].as_str().unwrap();
    assert!(
        Path::new(location).is_absolute() && location.ends_with("/out/local-crm/"),
        "{location}"
    );
    let parts = v["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 11, "10 countries and null: {parts:?}");
    for p in parts {
        assert!(Path::new(p["location"].as_str().unwrap()).is_dir(), "{p}");
    }
    let o = ferry(d, &["catalog", "show", "local-crm"], &[]);
    assert!(text(&o).contains("partition keys"), "{}", text(&o));

    // A table lost by hand comes back from the manifests.
    std::fs::remove_file(&file).unwrap();
    let o = ferry(d, &["catalog", "sync", "local-crm"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("11 partitions"), "{}", text(&o));
    let again = ferry(d, &["--json", "catalog", "show", "local-crm"], &[]);
    let w: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(w["table"]["columns"], t["columns"]);
    assert_eq!(w["partitions"], v["partitions"]);

    // ferry query without DuckDB says what to do.
    let o = ferry(
        d,
        &["query", "local-crm", "SELECT count(*) FROM local_crm"],
        &[("FERRY_DUCKDB", "/nonexistent/duckdb")],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("DuckDB command line") && text(&o).contains("FERRY_DUCKDB"),
        "{}",
        text(&o)
    );

    // With a DuckDB (here the Python package behind a `duckdb -c SQL` shim): 120 rows.
    if let Some(py) = std::env::var_os("FERRY_TEST_PYTHON") {
        let shim = d.join("duckdb");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nexec '{}' -c 'import sys, duckdb\nr = duckdb.sql(sys.argv[2])\nprint(r.fetchall())' -c \"$2\"\n",
                Path::new(&py).display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let o = ferry(
            d,
            &[
                "query",
                "local-crm",
                "SELECT count(*), count(DISTINCT id) FROM local_crm",
            ],
            &[("FERRY_DUCKDB", shim.to_str().unwrap())],
        );
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("[(120, 120)]"), "{}", text(&o));
    }
}

#[test]
fn catalog_commands_need_destination_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("flow.yaml"),
        FLOW.replace("  catalog: { database: lake, create_database: true }\n", ""),
    )
    .unwrap();
    let o = ferry(d, &["flows", "put", "flow.yaml"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ferry(d, &["catalog", "show", "local-crm"], &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("has no destination.catalog"),
        "{}",
        text(&o)
    );
}
