//! `destination.catalog`: register the flow's output as a table in a data catalog (the AWS Glue
//! Data Catalog on AWS, a catalog file under `$FERRY_HOME` locally), as AppFlow's "Data Catalog
//! settings" do. The table itself is built in [`crate::catalog`].

use super::{DestinationConfig, FieldError, Location};
use serde::{Deserialize, Serialize};

/// Where the flow's table goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// The Glue database (Athena's schema).
    pub database: String,
    /// The table; default: the flow name with `-` and `.` as `_`, lowercased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Put before the table name (AppFlow's `tablePrefix`): `crm_` + `accounts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_prefix: Option<String>,
    /// Create the database when it does not exist (default: false, a missing database is an
    /// error naming it).
    #[serde(default)]
    pub create_database: bool,
    /// Declare date and schema-version partitions with partition projection (no per-run
    /// partition calls) when the layout allows it (default: true). `false` always adds the
    /// run's partitions with `BatchCreatePartition`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub partition_projection: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Glue/Athena names: lowercase letters, digits and `_`, at most 255 characters.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A flow name as a table name: `crm-accounts.v2` -> `crm_accounts_v2`.
pub fn default_table(flow: &str) -> String {
    flow.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

impl CatalogConfig {
    /// The table name: prefix + (table or the flow's name).
    pub fn table_name(&self, flow: &str) -> String {
        format!(
            "{}{}",
            self.table_prefix.as_deref().unwrap_or(""),
            self.table.clone().unwrap_or_else(|| default_table(flow))
        )
    }

    /// Every problem of the catalog settings, with the field and the fix.
    pub fn validate(&self, flow: &str, dest: &DestinationConfig, errs: &mut Vec<FieldError>) {
        let p = "destination.catalog";
        if !valid_name(&self.database) {
            errs.push(FieldError::new(
                format!("{p}.database"),
                format!(
                    "'{}' is not a valid catalog database name; use 1-255 lowercase letters, digits and `_` (Athena refuses others), e.g. `crm`",
                    self.database
                ),
            ));
        }
        if let Some(t) = &self.table {
            if !valid_name(t) {
                errs.push(FieldError::new(
                    format!("{p}.table"),
                    format!("'{t}' is not a valid table name; use lowercase letters, digits and `_`, e.g. `accounts` (or leave it out: the flow name is used)"),
                ));
            }
        }
        if let Some(t) = &self.table_prefix {
            if t.is_empty() || !valid_name(t) {
                errs.push(FieldError::new(
                    format!("{p}.table_prefix"),
                    format!("'{t}' is not a valid table name prefix; use lowercase letters, digits and `_`, e.g. `crm_`"),
                ));
            }
        }
        let name = self.table_name(flow);
        if self.table.is_none() && !valid_name(&name) && valid_name(&self.database) {
            errs.push(FieldError::new(
                format!("{p}.table"),
                format!("the flow name gives the table name '{name}', which the catalog refuses; set `table:` to lowercase letters, digits and `_`"),
            ));
        } else if name.len() > 255 {
            errs.push(FieldError::new(
                format!("{p}.table"),
                "table_prefix + table is longer than 255 characters; shorten one",
            ));
        }
        // Partition columns must be table columns of their own: a partition field can be
        // neither a date folder name nor `schema_version`.
        for (i, f) in dest.layout.partition_by.iter().enumerate() {
            if ["dt", "schema_version"].contains(&f.as_str()) {
                errs.push(FieldError::new(
                    format!("destination.layout.partition_by[{i}]"),
                    format!("'{f}' is the name of a partition column ferry's catalog table already has (the date folders are `dt`, the schema version `schema_version`); rename the field with a `map` task"),
                ));
            }
        }
        // Rejected records under the table's location would be read as rows.
        if let Some(e) = dest.error_location() {
            let inside = match (&dest.location(), &e) {
                (Location::S3(out), Location::S3(err)) => {
                    out.bucket == err.bucket && inside_table(&err.prefix, &out.prefix, flow)
                }
                (Location::Local { path: out }, Location::Local { path: err }) => inside_table(
                    err.trim_start_matches("./"),
                    out.trim_start_matches("./"),
                    flow,
                ),
                _ => false,
            };
            if inside {
                errs.push(FieldError::new(
                    "destination.error_location",
                    "is inside the output location that destination.catalog registers, so rejected records would be read as rows; use another prefix, e.g. `s3://<bucket>/_rejected`",
                ));
            }
        }
    }
}

/// Whether rejected records under error prefix `err` (`<err>/<flow>/<run>/...`) land inside the
/// table's location (`<out>/<flow>/`).
fn inside_table(err: &str, out: &str, flow: &str) -> bool {
    let (e, o) = (err.trim_matches('/'), out.trim_matches('/'));
    let table = if o.is_empty() {
        flow.to_string()
    } else {
        format!("{o}/{flow}")
    };
    e == o || e == table || e.starts_with(&format!("{table}/"))
}

#[cfg(test)]
mod tests {
    use crate::flow::Flow;

    fn flow(dest_extra: &str) -> Result<Flow, crate::flow::FlowError> {
        let yaml = format!(
            r#"
name: crm-accounts
source: {{ connector: sample, entity: accounts }}
destination:
  s3: {{ bucket: lake, prefix: raw }}
{dest_extra}
"#
        );
        Flow::parse(&yaml, "t.yaml")
    }

    #[test]
    fn defaults_and_names() {
        let f = flow("  catalog: { database: crm }").unwrap();
        let c = f.destination.catalog.as_ref().unwrap();
        assert_eq!(c.table_name(&f.name), "crm_accounts");
        assert!(!c.create_database);
        assert!(c.partition_projection);
        let f = flow("  catalog: { database: crm, table: accts, table_prefix: ferry_ }").unwrap();
        assert_eq!(
            f.destination.catalog.unwrap().table_name("x"),
            "ferry_accts"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = flow(
            "  catalog: { database: Bad-Name, table: 'x y', table_prefix: 'A' }\n  error_location: s3://lake/raw",
        )
        .unwrap_err();
        let paths: Vec<String> = err.errors().into_iter().map(|e| e.path).collect();
        for p in [
            "destination.catalog.database",
            "destination.catalog.table",
            "destination.catalog.table_prefix",
            "destination.error_location",
        ] {
            assert!(paths.contains(&p.to_string()), "{p} missing in {paths:?}");
        }
        let err = flow("  catalog: { database: crm, tabel: x }").unwrap_err();
        assert!(err.to_string().contains("tabel"), "{err}");
        let err =
            flow("  catalog: { database: crm }\n  layout: { partition_by: [dt] }").unwrap_err();
        assert!(
            err.to_string()
                .contains("destination.layout.partition_by[0]"),
            "{err}"
        );
        // Outside the table location: fine.
        flow("  catalog: { database: crm }\n  error_location: s3://lake/rejected").unwrap();
    }
}
