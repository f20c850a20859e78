//! `ferry catalog show|sync FLOW` and `ferry query FLOW SQL`: the embedded engine's data
//! catalog (a file per table under `$FERRY_HOME/catalog/`) and a look at committed output.

use crate::out;
use anyhow::Result;
use ferry::flow::{Flow, Format};
use ferry::steps::Deps;
use serde_json::json;
use std::path::PathBuf;

fn catalog_config(flow: &Flow) -> Result<&ferry::flow::catalog::CatalogConfig> {
    flow.destination.catalog.as_ref().ok_or_else(|| {
        out::invalid_argument(format!(
            "flow '{}' has no destination.catalog; add `catalog: {{ database: <name> }}` under destination (docs/output.md, Catalog)",
            flow.name
        ))
    })
}

/// Print the flow's table: columns, partition keys, format, location, parameters, partitions.
pub async fn show(deps: &Deps, flow: &Flow, json_out: bool) -> Result<i32> {
    let cfg = catalog_config(flow)?;
    let name = cfg.table_name(&flow.name);
    let Some(t) = deps.catalog.get_table(&cfg.database, &name).await? else {
        return Err(out::not_found(format!(
            "catalog table {}.{name} does not exist yet: it is created by the flow's first successful run (or `ferry catalog sync {}`)",
            cfg.database, flow.name
        )));
    };
    let parts = deps.catalog.list_partitions(&cfg.database, &name).await?;
    if json_out {
        out::json(&json!({ "table": t, "partitions": parts }));
        return Ok(0);
    }
    outln!("table      {}.{}", t.database, t.name);
    outln!("location   {}", t.storage.location);
    outln!(
        "format     {} ({})",
        t.parameters
            .get("classification")
            .cloned()
            .unwrap_or_default(),
        t.storage.serde_library
    );
    outln!(
        "schema     version {}",
        t.parameters
            .get(ferry::catalog::SCHEMA_VERSION)
            .cloned()
            .unwrap_or_default()
    );
    outln!("columns");
    for c in &t.columns {
        outln!("  {:<32} {}", c.name, c.data_type);
    }
    if !t.partition_keys.is_empty() {
        outln!("partition keys");
        for c in &t.partition_keys {
            outln!("  {:<32} {}", c.name, c.data_type);
        }
    }
    if ferry::catalog::projected(&t) {
        outln!(
            "partitions projected: {}",
            t.parameters
                .get("storage.location.template")
                .cloned()
                .unwrap_or_default()
        );
    } else if !parts.is_empty() {
        outln!("partitions ({})", parts.len());
        for p in &parts {
            outln!("  {}  {}", p.values.join(", "), p.location);
        }
    }
    Ok(0)
}

/// Rebuild the flow's table from its committed runs' manifests.
pub async fn sync(deps: &Deps, flow: &Flow, json_out: bool) -> Result<i32> {
    let cfg = catalog_config(flow)?;
    let store = deps
        .destinations
        .resolve(&flow.destination.location())
        .await?;
    let warnings = ferry::catalog::sync(deps.catalog.as_ref(), store.as_ref(), flow).await?;
    let name = cfg.table_name(&flow.name);
    let parts = deps.catalog.list_partitions(&cfg.database, &name).await?;
    if json_out {
        out::json(
            &json!({ "table": format!("{}.{name}", cfg.database), "partitions": parts.len(), "warnings": warnings }),
        );
    } else {
        outln!(
            "catalog table {}.{name} is in step with the committed runs ({} partitions)",
            cfg.database,
            parts.len()
        );
        for w in &warnings {
            outln!("warning: {w}");
        }
    }
    Ok(0)
}

/// Quote a string for SQL.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Run SQL over the flow's committed output with the DuckDB command line: a view named after
/// the flow's table (or `flow`) over exactly the files the manifests list.
pub async fn query(deps: &Deps, flow: &Flow, sql: &str) -> Result<i32> {
    let store = deps
        .destinations
        .resolve(&flow.destination.location())
        .await?;
    let manifests = ferry::catalog::manifests(store.as_ref(), flow).await?;
    let files: Vec<String> = manifests
        .iter()
        .flat_map(|m| m.objects.iter().map(|o| lit(&o.uri)))
        .collect();
    if files.is_empty() {
        return Err(out::not_found(format!(
            "flow '{}' has no committed output yet; run it first (`ferry run {}`)",
            flow.name, flow.name
        )));
    }
    let list = format!("[{}]", files.join(", "));
    let d = &flow.destination;
    let read = match d.format {
        Format::Parquet => format!("read_parquet({list}, union_by_name = true)"),
        Format::Csv => format!(
            "read_csv({list}, header = {}, delim = {}, union_by_name = true)",
            d.csv.header,
            lit(&d.csv.delimiter.to_string())
        ),
        Format::Jsonl => {
            format!("read_json({list}, format = 'newline_delimited', union_by_name = true)")
        }
    };
    let view = d
        .catalog
        .as_ref()
        .map(|c| c.table_name(&flow.name))
        .unwrap_or_else(|| ferry::flow::catalog::default_table(&flow.name));
    let script = format!("CREATE VIEW \"{view}\" AS SELECT * FROM {read};\n{sql}");
    let bin = std::env::var_os("FERRY_DUCKDB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("duckdb"));
    let status = match std::process::Command::new(&bin)
        .arg("-c")
        .arg(&script)
        .status()
    {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(out::CliError::new(
                "NotFound",
                format!(
                    "ferry query runs the DuckDB command line, and `{}` was not found: install it (https://duckdb.org/docs/installation) or set FERRY_DUCKDB to its path. The flow's files are listed in its manifests; the view ferry creates is:\n  CREATE VIEW \"{view}\" AS SELECT * FROM {read};",
                    bin.display()
                ),
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(status.code().unwrap_or(1))
}
