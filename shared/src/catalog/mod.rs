//! The data catalog: a flow's output as a table (Glue/Hive types from ferry's Arrow schema,
//! the storage descriptor of the format, partition keys from the layout), kept in step with the
//! committed runs — from their manifests, so a catalog that missed a run is repaired from them.
//!
//! Pure parts (type mapping, the table a flow's output is, partition values of an object key,
//! schema evolution) are plain functions; [`apply`] writes through the [`Catalog`] port.

use crate::error::StoreError;
use crate::flow::catalog::CatalogConfig;
use crate::flow::{
    Compression, DateGranularity, DestinationConfig, Flow, Format, HierarchyPart, PrefixType,
};
use crate::model::Manifest;
use crate::ports::{Catalog, CatalogColumn, CatalogPartition, CatalogTable, StorageDescriptor};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use std::collections::BTreeMap;
use std::sync::Arc;

#[cfg(test)]
mod tests;

/// Hive's name for a null partition value (Athena reads it as NULL).
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";
/// Table parameter: the Arrow schema of the table's columns (what evolution compares).
pub const ARROW_SCHEMA: &str = "ferry.arrow_schema";
pub const SCHEMA_VERSION: &str = "ferry.schema_version";
pub const FLOW: &str = "ferry.flow";

/// The Glue/Hive type of an Arrow type.
pub fn glue_type(t: &DataType) -> String {
    use DataType::*;
    match t {
        Null | Utf8 | LargeUtf8 | Utf8View => "string".into(),
        Boolean => "boolean".into(),
        Int8 => "tinyint".into(),
        Int16 | UInt8 => "smallint".into(),
        Int32 | UInt16 => "int".into(),
        Int64 | UInt32 => "bigint".into(),
        UInt64 => "decimal(20,0)".into(),
        Float16 | Float32 => "float".into(),
        Float64 => "double".into(),
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => {
            format!("decimal({p},{s})")
        }
        Timestamp(..) => "timestamp".into(),
        Date32 | Date64 => "date".into(),
        Binary | LargeBinary | FixedSizeBinary(_) | BinaryView => "binary".into(),
        Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!(
                    "{}:{}",
                    f.name().to_ascii_lowercase(),
                    glue_type(f.data_type())
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
        List(f) | LargeList(f) | FixedSizeList(f, _) | ListView(f) | LargeListView(f) => {
            format!("array<{}>", glue_type(f.data_type()))
        }
        Map(entries, _) => match entries.data_type() {
            Struct(kv) if kv.len() == 2 => format!(
                "map<{},{}>",
                glue_type(kv[0].data_type()),
                glue_type(kv[1].data_type())
            ),
            _ => "string".into(),
        },
        // Time of day, intervals, unions: written as text by every encoder ferry has.
        _ => "string".into(),
    }
}

/// The partition columns a layout gives, in folder order, and whether they can be declared
/// with partition projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionScheme {
    /// `schemaVersion_<n>/` folders.
    pub schema_version: bool,
    /// `YYYY/MM/DD...` folders (as one `dt` column).
    pub date: DateGranularity,
    /// `field=value/` folders.
    pub fields: Vec<String>,
}

impl PartitionScheme {
    pub fn of(dest: &DestinationConfig) -> Self {
        let l = &dest.layout;
        let folders = matches!(
            l.prefix_type,
            PrefixType::Path | PrefixType::PathAndFilename
        );
        PartitionScheme {
            schema_version: folders && l.hierarchy.contains(&HierarchyPart::SchemaVersion),
            date: if folders {
                l.date
            } else {
                DateGranularity::None
            },
            fields: l.partition_by.clone(),
        }
    }

    /// Projection declares the partitions when they come from the layout alone (schema
    /// version and date folders): no partition by a field's values.
    pub fn projectable(&self) -> bool {
        self.fields.is_empty() && (self.schema_version || self.date != DateGranularity::None)
    }

    fn date_depth(&self) -> usize {
        match self.date {
            DateGranularity::None => 0,
            DateGranularity::Year => 1,
            DateGranularity::Month => 2,
            DateGranularity::Day => 3,
            DateGranularity::Hour => 4,
            DateGranularity::Minute => 5,
        }
    }

    /// The partition values of an object key relative to the table's location
    /// (`schemaVersion_2/2026/03/04/country=US/<run>/part-...`) and the folder they name.
    /// `None` if the key does not have the layout's folders.
    pub fn parse(&self, rel: &str) -> Option<(Vec<String>, String)> {
        let segs: Vec<&str> = rel.split('/').collect();
        let mut i = 0;
        let mut values = vec![];
        if self.schema_version {
            values.push(segs.get(i)?.strip_prefix("schemaVersion_")?.to_string());
            i += 1;
        }
        let n = self.date_depth();
        if n > 0 {
            let d = segs.get(i..i + n)?;
            if !d
                .iter()
                .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
            {
                return None;
            }
            values.push(d.join("/"));
            i += n;
        }
        for f in &self.fields {
            let (name, value) = segs.get(i)?.split_once('=')?;
            if name != crate::output::layout::escape(f) {
                return None;
            }
            values.push(if value == "null" {
                NULL_PARTITION.to_string()
            } else {
                unescape(value)
            });
            i += 1;
        }
        // The folder, without the file (or run folder) below it.
        if i >= segs.len() {
            return None;
        }
        Some((values, format!("{}/", segs[..i].join("/"))))
    }
}

/// Undo [`crate::output::layout::escape`]: `%XX` bytes, `__empty__`.
pub fn unescape(s: &str) -> String {
    if s == "__empty__" {
        return String::new();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The partition-key type of a `partition_by` field: typed where the folder value is the
/// value's own text (integers, booleans, dates), else `string`.
fn key_type(t: &DataType) -> String {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "bigint".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        _ => "string".into(),
    }
}

/// Partition key names for `partition_by` fields: the field's own name, except in CSV, where
/// the column stays in the file (read by position) and the key is `<field>_partition`.
pub fn key_name(field: &str, format: Format) -> String {
    let f = field.to_ascii_lowercase();
    match format {
        Format::Csv => format!("{f}_partition"),
        Format::Parquet | Format::Jsonl => f,
    }
}

fn storage(dest: &DestinationConfig, location: &str) -> StorageDescriptor {
    let mut serde = BTreeMap::new();
    let (input, output, lib) = match dest.format {
        Format::Parquet => {
            serde.insert("serialization.format".into(), "1".into());
            (
                "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
            )
        }
        Format::Csv => {
            serde.insert("separatorChar".into(), dest.csv.delimiter.to_string());
            serde.insert("quoteChar".into(), "\"".into());
            // RFC 4180: a quote inside a quoted field is doubled (OpenCSV's own default).
            serde.insert("escapeChar".into(), "\"".into());
            (
                "org.apache.hadoop.mapred.TextInputFormat",
                "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                "org.apache.hadoop.hive.serde2.OpenCSVSerde",
            )
        }
        Format::Jsonl => (
            "org.apache.hadoop.mapred.TextInputFormat",
            "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "org.openx.data.jsonserde.JsonSerDe",
        ),
    };
    StorageDescriptor {
        location: location.to_string(),
        input_format: input.into(),
        output_format: output.into(),
        serde_library: lib.into(),
        serde_parameters: serde,
        compressed: dest.compression() != Compression::None,
    }
}

/// The table a flow's output is, for output written with `written` (the schema as the files
/// have it: [`crate::output::output_schema`]) at schema version `version`, under `location`
/// (`s3://bucket/prefix/flow/`). `first_dt`: the earliest date folder, where projection ranges
/// start.
pub fn table_for(
    flow: &Flow,
    cfg: &CatalogConfig,
    written: &Schema,
    version: u32,
    location: &str,
    first_dt: Option<&str>,
) -> CatalogTable {
    let dest = &flow.destination;
    let scheme = PartitionScheme::of(dest);
    let by_name = dest.format != Format::Csv;
    let data: Vec<Field> = written
        .fields()
        .iter()
        .filter(|f| !(by_name && scheme.fields.contains(f.name())))
        .map(|f| f.as_ref().clone())
        .collect();
    let columns = data
        .iter()
        .map(|f| CatalogColumn {
            name: f.name().to_ascii_lowercase(),
            data_type: glue_type(f.data_type()),
        })
        .collect();
    let mut keys = vec![];
    if scheme.schema_version {
        keys.push(CatalogColumn {
            name: "schema_version".into(),
            data_type: "int".into(),
        });
    }
    if scheme.date != DateGranularity::None {
        keys.push(CatalogColumn {
            name: "dt".into(),
            data_type: "string".into(),
        });
    }
    for f in &scheme.fields {
        let t = written
            .field_with_name(f)
            .map(|x| key_type(x.data_type()))
            .unwrap_or_else(|_| "string".into());
        keys.push(CatalogColumn {
            name: key_name(f, dest.format),
            data_type: t,
        });
    }
    let mut p = BTreeMap::new();
    p.insert("EXTERNAL".into(), "TRUE".into());
    p.insert(
        "classification".into(),
        match dest.format {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Jsonl => "json",
        }
        .into(),
    );
    p.insert(SCHEMA_VERSION.into(), version.to_string());
    p.insert(FLOW.into(), flow.name.clone());
    p.insert(
        ARROW_SCHEMA.into(),
        serde_json::to_string(&Schema::new(data)).unwrap_or_default(),
    );
    match dest.format {
        Format::Parquet => {
            p.insert(
                "parquet.compression".into(),
                match dest.compression() {
                    Compression::Zstd => "ZSTD",
                    Compression::Snappy => "SNAPPY",
                    Compression::Gzip => "GZIP",
                    Compression::None => "UNCOMPRESSED",
                }
                .into(),
            );
        }
        Format::Csv | Format::Jsonl => {
            p.insert(
                "compressionType".into(),
                if dest.compression() == Compression::Gzip {
                    "gzip"
                } else {
                    "none"
                }
                .into(),
            );
        }
    }
    if dest.format == Format::Csv && dest.csv.header {
        p.insert("skip.header.line.count".into(), "1".into());
    }
    if cfg.partition_projection && scheme.projectable() {
        p.insert("projection.enabled".into(), "true".into());
        let mut template = location.trim_end_matches('/').to_string();
        if scheme.schema_version {
            p.insert("projection.schema_version.type".into(), "integer".into());
            p.insert(
                "projection.schema_version.range".into(),
                format!("1,{}", version.max(1)),
            );
            template.push_str("/schemaVersion_${schema_version}");
        }
        if scheme.date != DateGranularity::None {
            let (fmt, unit) = match scheme.date {
                DateGranularity::Year => ("yyyy", "YEARS"),
                DateGranularity::Month => ("yyyy/MM", "MONTHS"),
                DateGranularity::Day => ("yyyy/MM/dd", "DAYS"),
                DateGranularity::Hour => ("yyyy/MM/dd/HH", "HOURS"),
                DateGranularity::Minute | DateGranularity::None => ("yyyy/MM/dd/HH/mm", "MINUTES"),
            };
            p.insert("projection.dt.type".into(), "date".into());
            p.insert("projection.dt.format".into(), fmt.into());
            p.insert(
                "projection.dt.range".into(),
                format!(
                    "{},NOW",
                    first_dt.unwrap_or("2000/01/01/00/00".get(..fmt.len()).unwrap_or("2000"))
                ),
            );
            p.insert("projection.dt.interval".into(), "1".into());
            p.insert("projection.dt.interval.unit".into(), unit.into());
            template.push_str("/${dt}");
        }
        template.push('/');
        p.insert("storage.location.template".into(), template);
    }
    CatalogTable {
        database: cfg.database.clone(),
        name: cfg.table_name(&flow.name),
        columns,
        partition_keys: keys,
        storage: storage(dest, location),
        parameters: p,
    }
}

/// Whether a table uses partition projection (no partitions are added).
pub fn projected(t: &CatalogTable) -> bool {
    t.parameters.get("projection.enabled").map(String::as_str) == Some("true")
}

/// The type a column of `old` type may become so that files written with `old` stay readable:
/// the same, a wider number (int -> bigint, float -> double, a decimal with more integer
/// digits), a struct with more fields, a list of a widened item; in text formats also text.
pub fn widen(old: &DataType, new: &DataType, format: Format) -> Option<DataType> {
    use DataType::*;
    if old == new {
        return Some(old.clone());
    }
    match (old, new) {
        (Null, t) => Some(t.clone()),
        (t, Null) => Some(t.clone()),
        (Int8 | Int16 | Int32, Int64) | (Int8 | Int16, Int32) | (Float32, Float64) => {
            Some(new.clone())
        }
        (Int8 | Int16 | Int32 | Int64, Float64) if format == Format::Jsonl => Some(new.clone()),
        (Decimal128(p1, s1), Decimal128(p2, s2)) if s1 == s2 && p2 >= p1 => Some(new.clone()),
        (Timestamp(_, _), Timestamp(_, _)) => Some(new.clone()),
        (Struct(a), Struct(b)) => {
            let mut out: Vec<Field> = vec![];
            for fa in a.iter() {
                match b.iter().find(|fb| fb.name() == fa.name()) {
                    Some(fb) => out.push(Field::new(
                        fa.name(),
                        widen(fa.data_type(), fb.data_type(), format)?,
                        true,
                    )),
                    None => out.push(fa.as_ref().clone()),
                }
            }
            for fb in b.iter() {
                if !a.iter().any(|fa| fa.name() == fb.name()) {
                    out.push(fb.as_ref().clone());
                }
            }
            Some(Struct(Fields::from(out)))
        }
        (List(a), List(b)) => Some(List(Arc::new(Field::new(
            "item",
            widen(a.data_type(), b.data_type(), format)?,
            true,
        )))),
        (_, Utf8) if format != Format::Parquet => Some(Utf8),
        _ => None,
    }
}

/// The table after a run whose output is `new`: columns of `old` kept (widened where readers
/// allow), new columns appended; a change old files cannot be read as is refused — the old
/// column stays — with a warning. `None` if nothing can be updated (another layout or format:
/// a new table is needed), with the warning saying so.
pub fn evolve(
    old: &CatalogTable,
    new: &CatalogTable,
    format: Format,
) -> (CatalogTable, Vec<String>) {
    let mut warnings = vec![];
    let table = format!("{}.{}", old.database, old.name);
    if old.partition_keys != new.partition_keys
        || old.storage.serde_library != new.storage.serde_library
    {
        warnings.push(format!(
            "catalog table {table}: the flow's layout or format changed (partition keys {} -> {}, SerDe {} -> {}); the table was left as it is: drop it (ferry recreates it on the next run) or set destination.catalog.table to a new name",
            cols(&old.partition_keys), cols(&new.partition_keys), old.storage.serde_library, new.storage.serde_library
        ));
        return (old.clone(), warnings);
    }
    let schema = |t: &CatalogTable| -> Option<Schema> {
        serde_json::from_str(t.parameters.get(ARROW_SCHEMA)?).ok()
    };
    let (Some(a), Some(b)) = (schema(old), schema(new)) else {
        warnings.push(format!(
            "catalog table {table} was not created by ferry (no {ARROW_SCHEMA} parameter); its columns were left as they are"
        ));
        let mut t = old.clone();
        t.storage.location = new.storage.location.clone();
        return (t, warnings);
    };
    let mut fields: Vec<Field> = vec![];
    for fa in a.fields() {
        match b.field_with_name(fa.name()) {
            Ok(fb) => match widen(fa.data_type(), fb.data_type(), format) {
                Some(t) => fields.push(Field::new(fa.name(), t, true)),
                // The table is already wider (a resync replaying an older run): it stays.
                None if widen(fb.data_type(), fa.data_type(), format).is_some() => {
                    fields.push(fa.as_ref().clone())
                }
                None => {
                    warnings.push(format!(
                        "catalog table {table}: column '{}' changed from {} to {}, which files written before cannot be read as; the table keeps {} (queries over the new files fail on that column): cast it back with a `map` task, or start a new table (destination.catalog.table)",
                        fa.name(), glue_type(fa.data_type()), glue_type(fb.data_type()), glue_type(fa.data_type())
                    ));
                    fields.push(fa.as_ref().clone());
                }
            },
            // A field the run no longer writes: old files have it, new ones read it as null.
            Err(_) => fields.push(fa.as_ref().clone()),
        }
    }
    let added: Vec<&Arc<Field>> = b
        .fields()
        .iter()
        .filter(|f| a.field_with_name(f.name()).is_err())
        .collect();
    if format == Format::Csv {
        // CSV is read by position: new columns must come after every old one, in file order.
        let old_names: Vec<&String> = a.fields().iter().map(|f| f.name()).collect();
        let new_prefix: Vec<&String> = b
            .fields()
            .iter()
            .take(old_names.len())
            .map(|f| f.name())
            .collect();
        if !added.is_empty() && new_prefix != old_names {
            warnings.push(format!(
                "catalog table {table}: new CSV columns ({}) do not come after the old ones, and CSV is read by position; the table was left as it is: use Parquet or JSON lines, or start a new table (destination.catalog.table)",
                added.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
            ));
            return (old.clone(), warnings);
        }
    }
    fields.extend(added.into_iter().map(|f| f.as_ref().clone()));
    let merged = Schema::new(fields);
    let mut t = new.clone();
    t.columns = merged
        .fields()
        .iter()
        .map(|f| CatalogColumn {
            name: f.name().to_ascii_lowercase(),
            data_type: glue_type(f.data_type()),
        })
        .collect();
    t.parameters.insert(
        ARROW_SCHEMA.into(),
        serde_json::to_string(&merged).unwrap_or_default(),
    );
    // The schema version never goes back (a sync replays manifests in commit order).
    let v = |t: &CatalogTable| -> u32 {
        t.parameters
            .get(SCHEMA_VERSION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let version = v(old).max(v(new));
    t.parameters
        .insert(SCHEMA_VERSION.into(), version.to_string());
    if t.parameters.contains_key("projection.schema_version.range") {
        t.parameters.insert(
            "projection.schema_version.range".into(),
            format!("1,{}", version.max(1)),
        );
    }
    // The projected dates start at the first run's.
    if let (Some(o), Some(n)) = (
        old.parameters.get("projection.dt.range"),
        new.parameters.get("projection.dt.range"),
    ) {
        let start = |r: &str| r.split(',').next().unwrap_or_default().to_string();
        let s = start(o).min(start(n));
        t.parameters
            .insert("projection.dt.range".into(), format!("{s},NOW"));
    }
    (t, warnings)
}

fn cols(c: &[CatalogColumn]) -> String {
    format!(
        "[{}]",
        c.iter()
            .map(|c| format!("{} {}", c.name, c.data_type))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The folder of the table: `[<prefix>/]<flow>/` (the key of its location in the output store).
pub fn table_key(dest_prefix: &str, flow: &str) -> String {
    let p = dest_prefix.trim_matches('/');
    if p.is_empty() {
        format!("{flow}/")
    } else {
        format!("{p}/{flow}/")
    }
}

/// Bring the catalog in step with committed runs (their manifests, in commit order): the
/// database (created if the flow allows), the table (created, or evolved run by run), and the
/// partitions of their objects (unless projected). Idempotent. Returns the warnings for the
/// run record.
pub async fn apply(
    catalog: &dyn Catalog,
    flow: &Flow,
    cfg: &CatalogConfig,
    table_key: &str,
    location: &str,
    manifests: &[Manifest],
) -> Result<Vec<String>, StoreError> {
    let mut warnings = vec![];
    if !catalog.database_exists(&cfg.database).await? {
        if cfg.create_database {
            catalog.create_database(&cfg.database).await?;
        } else {
            return Err(StoreError::Invalid(format!(
                "catalog database '{}' does not exist: create it (`aws glue create-database --database-input Name={}`) or set destination.catalog.create_database: true",
                cfg.database, cfg.database
            )));
        }
    }
    let scheme = PartitionScheme::of(&flow.destination);
    let mut manifests: Vec<&Manifest> = manifests.iter().collect();
    manifests.sort_by_key(|m| m.committed_at);
    let mut parts = std::collections::BTreeSet::new();
    let mut first_dt: Option<String> = None;
    for m in &manifests {
        for o in &m.objects {
            let Some(rel) = o.key.strip_prefix(table_key) else {
                continue;
            };
            if let Some((values, folder)) = scheme.parse(rel) {
                if scheme.date != DateGranularity::None {
                    let dt = &values[usize::from(scheme.schema_version)];
                    if first_dt.as_ref().is_none_or(|f| dt < f) {
                        first_dt = Some(dt.clone());
                    }
                }
                parts.insert(CatalogPartition {
                    values,
                    location: format!("{}{folder}", location),
                });
            }
        }
    }
    let existing = catalog
        .get_table(&cfg.database, &cfg.table_name(&flow.name))
        .await?;
    let mut table = existing.clone();
    for m in &manifests {
        let Some(schema) = m
            .schema
            .as_ref()
            .and_then(|s| crate::schema::schema_from_json(s).ok())
        else {
            warnings.push(format!(
                "run {}: its manifest has no schema (written by an older ferry); the catalog table keeps its columns",
                m.run_id
            ));
            continue;
        };
        let desired = table_for(
            flow,
            cfg,
            &schema,
            m.schema_version,
            location,
            first_dt.as_deref(),
        );
        table = Some(match table {
            None => desired,
            Some(old) => {
                let (t, w) = evolve(&old, &desired, flow.destination.format);
                warnings.extend(w);
                t
            }
        });
    }
    let Some(table) = table else {
        return Ok(warnings);
    };
    if existing.as_ref() != Some(&table) {
        catalog.put_table(&table).await?;
    }
    if !projected(&table) && !table.partition_keys.is_empty() && !parts.is_empty() {
        let parts: Vec<CatalogPartition> = parts.into_iter().collect();
        catalog
            .add_partitions(
                &table.database,
                &table.name,
                &parts,
                &table.storage,
                &table.columns,
            )
            .await?;
    }
    Ok(warnings)
}

/// The destination prefix of a flow's output (empty for a local directory).
pub fn dest_prefix(flow: &Flow) -> String {
    match flow.destination.location() {
        crate::flow::Location::S3(s3) => s3.prefix,
        crate::flow::Location::Local { .. } => String::new(),
    }
}

/// Present while the catalog is behind the committed runs (a catalog update failed after a
/// commit): the next run, or `ferry catalog sync`, rebuilds it from every manifest. Under the
/// table's folder in a `_`-folder, which Athena and Hive skip.
pub fn resync_marker_key(flow: &Flow) -> String {
    format!(
        "{}_catalog/resync-needed",
        table_key(&dest_prefix(flow), &flow.name)
    )
}

/// Every committed run's manifest, in commit order.
pub async fn manifests(
    store: &dyn crate::ports::BlobStore,
    flow: &Flow,
) -> Result<Vec<Manifest>, StoreError> {
    let folder = crate::output::layout::manifest_key(&dest_prefix(flow), &flow.name, "")
        .trim_end_matches(".json")
        .to_string();
    let mut out = vec![];
    for k in store.list(&folder).await? {
        if !k.ends_with(".json") {
            continue;
        }
        let body = store.get(&k).await?;
        let m: Manifest = serde_json::from_slice(&body).map_err(|e| {
            StoreError::Invalid(format!("manifest {}: not valid: {e}", store.uri(&k)))
        })?;
        out.push(m);
    }
    out.sort_by_key(|m| m.committed_at);
    Ok(out)
}

/// Bring the flow's catalog table in step with `manifests` (all of them, or a run's own),
/// through `catalog`, for output in `store`.
pub async fn register(
    catalog: &dyn Catalog,
    store: &dyn crate::ports::BlobStore,
    flow: &Flow,
    manifests: &[Manifest],
) -> Result<Vec<String>, StoreError> {
    let Some(cfg) = &flow.destination.catalog else {
        return Ok(vec![]);
    };
    let key = table_key(&dest_prefix(flow), &flow.name);
    let location = store.uri(&key);
    let location = if location.ends_with('/') {
        location
    } else {
        format!("{location}/")
    };
    apply(catalog, flow, cfg, &key, &location, manifests).await
}

/// Rebuild the flow's catalog table from every manifest (`ferry catalog sync`, and the run
/// after a catalog failure); clears the resync marker.
pub async fn sync(
    catalog: &dyn Catalog,
    store: &dyn crate::ports::BlobStore,
    flow: &Flow,
) -> Result<Vec<String>, StoreError> {
    let all = manifests(store, flow).await?;
    let w = register(catalog, store, flow, &all).await?;
    match store.delete(&resync_marker_key(flow)).await {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(w)
}

/// After a run's commit: register its manifest (or, when an earlier update failed, every
/// manifest). Never fails the run: a catalog failure becomes a warning and a resync marker, and
/// the next run repairs the table.
pub async fn after_commit(
    catalog: &dyn Catalog,
    store: &dyn crate::ports::BlobStore,
    flow: &Flow,
    manifest: &Manifest,
) -> Vec<String> {
    let Some(cfg) = &flow.destination.catalog else {
        return vec![];
    };
    let marker = resync_marker_key(flow);
    let behind = store
        .list(&marker)
        .await
        .map(|l| !l.is_empty())
        .unwrap_or(true);
    let result = if behind {
        sync(catalog, store, flow).await
    } else {
        register(catalog, store, flow, std::slice::from_ref(manifest)).await
    };
    match result {
        Ok(w) => w,
        Err(e) => {
            let _ = store
                .put(
                    &marker,
                    manifest.run_id.clone().into_bytes(),
                    &Default::default(),
                )
                .await;
            tracing::warn!(flow = %flow.name, run_id = %manifest.run_id, error = %e, "catalog update failed after the commit");
            vec![format!(
                "the run's data is committed, but catalog table {}.{} was not updated: {e}; the next run repairs it from the manifests (or run `ferry catalog sync {}`)",
                cfg.database,
                cfg.table_name(&flow.name),
                flow.name
            )]
        }
    }
}
