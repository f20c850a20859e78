//! Object keys, as AppFlow lays them out (`prefixConfig`), plus Hive-style partitions:
//!
//! `<prefix>/<flow>/[schemaVersion_<n>/][YYYY/MM/DD[/HH[/mm]]/][field=value/...]<execution_id>/part-<chunk>-<n>.<ext>`
//!
//! Every key carries the run id — as a folder (`hierarchy: [execution_id]`) or at the start of
//! the file name's `part-` — so two runs can never write the same key, and a failed run's
//! objects are found by listing (even those no chunk result recorded).
//!
//! Pure functions: same inputs, same key — which is what makes retried writes overwrite.

use crate::flow::{DateGranularity, HierarchyPart, Layout, PrefixType};
use chrono::{DateTime, Utc};

/// Everything a key depends on.
#[derive(Debug, Clone)]
pub struct KeyInput<'a> {
    /// Destination prefix (may be empty).
    pub prefix: &'a str,
    pub flow: &'a str,
    pub execution_id: &'a str,
    pub schema_version: u32,
    /// The run's start time: drives the date folders.
    pub run_time: DateTime<Utc>,
    /// `(field, value)`; `None` is a null.
    pub partition: &'a [(String, Option<String>)],
    pub chunk: u32,
    pub part: u32,
    pub extension: &'a str,
}

/// The object key for one output file.
pub fn object_key(layout: &Layout, k: &KeyInput<'_>) -> String {
    let mut segs: Vec<String> = vec![];
    let prefix = k.prefix.trim_matches('/');
    if !prefix.is_empty() {
        segs.push(prefix.to_string());
    }
    segs.push(k.flow.to_string());
    let folders = matches!(
        layout.prefix_type,
        PrefixType::Path | PrefixType::PathAndFilename
    );
    let in_name = matches!(
        layout.prefix_type,
        PrefixType::Filename | PrefixType::PathAndFilename
    );
    if folders && layout.hierarchy.contains(&HierarchyPart::SchemaVersion) {
        segs.push(format!("schemaVersion_{}", k.schema_version));
    }
    if folders {
        segs.extend(date_folders(layout.date, k.run_time));
    }
    for (field, value) in k.partition {
        segs.push(format!(
            "{}={}",
            escape(field),
            value
                .as_deref()
                .map(escape)
                .unwrap_or_else(|| "null".into())
        ));
    }
    if folders && layout.hierarchy.contains(&HierarchyPart::ExecutionId) {
        segs.push(k.execution_id.to_string());
    }
    let id_folder = folders && layout.hierarchy.contains(&HierarchyPart::ExecutionId);
    let mut name = String::new();
    if in_name {
        if let Some(stamp) = date_stamp(layout.date, k.run_time) {
            name.push_str(&stamp);
            name.push('-');
        }
        if !folders {
            if layout.hierarchy.contains(&HierarchyPart::SchemaVersion) {
                name.push_str(&format!("schemaVersion_{}-", k.schema_version));
            }
            name.push_str(k.execution_id);
            name.push('-');
        }
    }
    if !id_folder && (!in_name || folders) {
        // Neither a folder nor the file name prefix names the run: the name does.
        name.push_str(k.execution_id);
        name.push('-');
    }
    name.push_str(&format!(
        "part-{:05}-{:03}.{}",
        k.chunk, k.part, k.extension
    ));
    segs.push(name);
    segs.join("/")
}

/// The folder every object of a run is under: `<prefix>/<flow>/[schemaVersion_<n>/][date
/// folders of the run's start/]` (ending in `/`). Listing it and keeping the keys
/// [`key_of_run`] finds a run's objects, including any no chunk result recorded.
pub fn run_scan_prefix(
    layout: &Layout,
    prefix: &str,
    flow: &str,
    schema_version: u32,
    run_time: DateTime<Utc>,
) -> String {
    let mut segs: Vec<String> = vec![];
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() {
        segs.push(prefix.to_string());
    }
    segs.push(flow.to_string());
    if matches!(
        layout.prefix_type,
        PrefixType::Path | PrefixType::PathAndFilename
    ) {
        if layout.hierarchy.contains(&HierarchyPart::SchemaVersion) {
            segs.push(format!("schemaVersion_{schema_version}"));
        }
        segs.extend(date_folders(layout.date, run_time));
    }
    let mut out = segs.join("/");
    out.push('/');
    out
}

/// Whether `key` is an object of run `run_id`: the id is one of its folders, or comes right
/// before `-part-` in its file name ([`object_key`] puts it in one of the two places).
pub fn key_of_run(key: &str, run_id: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or_default();
    let tail = format!("{run_id}-part-");
    key.split('/').any(|s| s == run_id)
        || name.starts_with(&tail)
        || name.contains(&format!("-{tail}"))
}

/// The chunk number an object of a run was written for: the `<chunk>` of its file name's
/// `part-<chunk>-<n>` (or of `rejected-<chunk>`).
pub fn chunk_of_key(key: &str) -> Option<u32> {
    let name = key.rsplit('/').next()?;
    let at = name
        .rfind("part-")
        .map(|i| i + "part-".len())
        .or_else(|| name.rfind("rejected-").map(|i| i + "rejected-".len()))?;
    let digits: String = name[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The key of a chunk's rejected records under the error location:
/// `[<prefix>/]<flow>/<run_id>/rejected-<chunk>.jsonl` (fixed by (run, chunk): retries overwrite).
pub fn rejected_key(prefix: &str, flow: &str, run_id: &str, chunk: u32) -> String {
    let prefix = prefix.trim_matches('/');
    let key = format!("{flow}/{run_id}/rejected-{chunk:06}.jsonl");
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}/{key}")
    }
}

/// Where a run's manifest goes: `<prefix>/<flow>/_manifests/<execution_id>.json`.
pub fn manifest_key(prefix: &str, flow: &str, execution_id: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{flow}/_manifests/{execution_id}.json")
    } else {
        format!("{prefix}/{flow}/_manifests/{execution_id}.json")
    }
}

fn date_folders(g: DateGranularity, t: DateTime<Utc>) -> Vec<String> {
    let all = [
        t.format("%Y").to_string(),
        t.format("%m").to_string(),
        t.format("%d").to_string(),
        t.format("%H").to_string(),
        t.format("%M").to_string(),
    ];
    let n = match g {
        DateGranularity::None => 0,
        DateGranularity::Year => 1,
        DateGranularity::Month => 2,
        DateGranularity::Day => 3,
        DateGranularity::Hour => 4,
        DateGranularity::Minute => 5,
    };
    all[..n].to_vec()
}

fn date_stamp(g: DateGranularity, t: DateTime<Utc>) -> Option<String> {
    let f = match g {
        DateGranularity::None => return None,
        DateGranularity::Year => "%Y",
        DateGranularity::Month => "%Y-%m",
        DateGranularity::Day => "%Y-%m-%d",
        DateGranularity::Hour => "%Y-%m-%dT%H",
        DateGranularity::Minute => "%Y-%m-%dT%H-%M",
    };
    Some(t.format(f).to_string())
}

/// Hive-style escaping of a partition name or value: `%XX` for bytes that could change the
/// path (`/`, `\`, `=`, `%`, `:`, quotes, `#`, `?`, `*`, control characters) and for a value
/// made of dots only, so a value can never climb out of its folder. Other Unicode is kept.
pub fn escape(s: &str) -> String {
    if s.is_empty() {
        return "__empty__".into();
    }
    if s.chars().all(|c| c == '.') {
        return s.bytes().map(|b| format!("%{b:02X}")).collect();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let escape_it = c.is_control()
            || matches!(
                c,
                '/' | '\\'
                    | '='
                    | '%'
                    | ':'
                    | '"'
                    | '\''
                    | '#'
                    | '?'
                    | '*'
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '^'
                    | '<'
                    | '>'
                    | '|'
            );
        if escape_it {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn input<'a>(partition: &'a [(String, Option<String>)]) -> KeyInput<'a> {
        KeyInput {
            prefix: "raw/crm/",
            flow: "accounts",
            execution_id: "run-1",
            schema_version: 2,
            run_time: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
            partition,
            chunk: 3,
            part: 1,
            extension: "parquet",
        }
    }

    fn layout(
        prefix_type: PrefixType,
        date: DateGranularity,
        hierarchy: Vec<HierarchyPart>,
    ) -> Layout {
        Layout {
            prefix_type,
            date,
            hierarchy,
            partition_by: vec![],
        }
    }

    #[test]
    fn path_layout() {
        let l = layout(
            PrefixType::Path,
            DateGranularity::Day,
            vec![HierarchyPart::SchemaVersion, HierarchyPart::ExecutionId],
        );
        assert_eq!(
            object_key(&l, &input(&[])),
            "raw/crm/accounts/schemaVersion_2/2026/03/04/run-1/part-00003-001.parquet"
        );
        let l = layout(
            PrefixType::Path,
            DateGranularity::Minute,
            vec![HierarchyPart::ExecutionId],
        );
        assert_eq!(
            object_key(&l, &input(&[])),
            "raw/crm/accounts/2026/03/04/05/06/run-1/part-00003-001.parquet"
        );
        // Without the execution id folder, the run id starts the file name.
        let l = layout(PrefixType::Path, DateGranularity::None, vec![]);
        assert_eq!(
            object_key(&l, &input(&[])),
            "raw/crm/accounts/run-1-part-00003-001.parquet"
        );
    }

    #[test]
    fn filename_layouts() {
        let l = layout(
            PrefixType::Filename,
            DateGranularity::Hour,
            vec![HierarchyPart::ExecutionId],
        );
        assert_eq!(
            object_key(&l, &input(&[])),
            "raw/crm/accounts/2026-03-04T05-run-1-part-00003-001.parquet"
        );
        let l = layout(
            PrefixType::PathAndFilename,
            DateGranularity::Month,
            vec![HierarchyPart::ExecutionId],
        );
        assert_eq!(
            object_key(&l, &input(&[])),
            "raw/crm/accounts/2026/03/run-1/2026-03-part-00003-001.parquet"
        );
    }

    #[test]
    fn hive_partitions_with_nulls_and_hostile_values() {
        let l = layout(
            PrefixType::Path,
            DateGranularity::None,
            vec![HierarchyPart::ExecutionId],
        );
        let p = vec![
            ("country".to_string(), None),
            ("city".to_string(), Some("../../etc".to_string())),
            ("k".to_string(), Some("a/b=c".to_string())),
            ("u".to_string(), Some("Zürich 東京".to_string())),
            ("dots".to_string(), Some("..".to_string())),
        ];
        let key = object_key(&l, &input(&p));
        assert_eq!(
            key,
            "raw/crm/accounts/country=null/city=..%2F..%2Fetc/k=a%2Fb%3Dc/u=Zürich 東京/dots=%2E%2E/run-1/part-00003-001.parquet"
        );
        // No segment climbs out.
        assert!(key
            .split('/')
            .all(|s| s != ".." && s != "." && !s.is_empty()));
    }

    #[test]
    fn every_prefix_type_with_both_hierarchy_parts() {
        let both = vec![HierarchyPart::SchemaVersion, HierarchyPart::ExecutionId];
        let cases = [
            (
                PrefixType::Filename,
                "raw/crm/accounts/2026-03-04-schemaVersion_2-run-1-part-00003-001.parquet",
            ),
            (
                PrefixType::Path,
                "raw/crm/accounts/schemaVersion_2/2026/03/04/run-1/part-00003-001.parquet",
            ),
            (
                PrefixType::PathAndFilename,
                "raw/crm/accounts/schemaVersion_2/2026/03/04/run-1/2026-03-04-part-00003-001.parquet",
            ),
        ];
        for (t, want) in cases {
            let l = layout(t, DateGranularity::Day, both.clone());
            assert_eq!(object_key(&l, &input(&[])), want, "{t:?}");
        }
        // Every date granularity, as folders.
        let years = [
            (DateGranularity::Year, "2026/"),
            (DateGranularity::Month, "2026/03/"),
            (DateGranularity::Day, "2026/03/04/"),
            (DateGranularity::Hour, "2026/03/04/05/"),
            (DateGranularity::Minute, "2026/03/04/05/06/"),
        ];
        for (g, folders) in years {
            let l = layout(PrefixType::Path, g, vec![]);
            assert_eq!(
                object_key(&l, &input(&[])),
                format!("raw/crm/accounts/{folders}run-1-part-00003-001.parquet")
            );
        }
    }

    #[test]
    fn partition_values_never_escape_their_folder() {
        let l = layout(PrefixType::Filename, DateGranularity::None, vec![]);
        for hostile in [
            "",
            ".",
            "..",
            "../",
            "/",
            "//",
            "a/../../b",
            "\\..\\x",
            "k=v",
            "100%",
            "\0nul",
            "line\nbreak",
            "?x#y",
            "東京/..",
        ] {
            let p = vec![("f=/..".to_string(), Some(hostile.to_string()))];
            let key = object_key(&l, &input(&p));
            let segs: Vec<&str> = key.split('/').collect();
            assert_eq!(segs.len(), 5, "{hostile:?} -> {key}");
            assert!(segs[3].starts_with("f%3D%2F..="), "{key}");
            assert!(
                segs.iter()
                    .all(|s| !s.is_empty() && *s != "." && *s != ".."),
                "{key}"
            );
            assert!(
                !key.contains('\\') && !key.contains('\n') && !key.contains('\0'),
                "{key}"
            );
        }
    }

    /// Two runs never write the same key, whatever the layout; every key is found by its run's
    /// scan prefix and recognised as its run's (and no other run's).
    #[test]
    fn every_layout_keeps_runs_apart() {
        let parts = [
            vec![],
            vec![HierarchyPart::SchemaVersion],
            vec![HierarchyPart::ExecutionId],
            vec![HierarchyPart::SchemaVersion, HierarchyPart::ExecutionId],
        ];
        let p = [("country".to_string(), Some("DE".to_string()))];
        for t in [
            PrefixType::Filename,
            PrefixType::Path,
            PrefixType::PathAndFilename,
        ] {
            for g in [
                DateGranularity::None,
                DateGranularity::Day,
                DateGranularity::Minute,
            ] {
                for h in &parts {
                    let l = layout(t, g, h.clone());
                    for partition in [&[][..], &p[..]] {
                        let mut a = input(partition);
                        a.execution_id = "run-1";
                        let mut b = input(partition);
                        b.execution_id = "run-10";
                        let (ka, kb) = (object_key(&l, &a), object_key(&l, &b));
                        assert_ne!(ka, kb, "{t:?} {g:?} {h:?}");
                        let scan =
                            run_scan_prefix(&l, a.prefix, a.flow, a.schema_version, a.run_time);
                        assert!(
                            ka.starts_with(&scan) && scan.ends_with('/'),
                            "{ka} under {scan}"
                        );
                        assert!(
                            key_of_run(&ka, "run-1") && !key_of_run(&ka, "run-10"),
                            "{ka}"
                        );
                        assert!(
                            key_of_run(&kb, "run-10") && !key_of_run(&kb, "run-1"),
                            "{kb}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_chunk_of_a_key_is_read_from_its_file_name() {
        assert_eq!(chunk_of_key("f/2026/r1/part-00007-000.parquet"), Some(7));
        assert_eq!(chunk_of_key("f/r1-part-300002-001.jsonl.gz"), Some(300_002));
        assert_eq!(chunk_of_key("f/part-x/r1-part-00003-000.csv"), Some(3));
        assert_eq!(chunk_of_key("e/f/r1/rejected-100004.jsonl"), Some(100_004));
        assert_eq!(chunk_of_key("f/_manifests/r1.json"), None);
    }

    #[test]
    fn manifest_keys() {
        assert_eq!(manifest_key("raw/", "f", "e"), "raw/f/_manifests/e.json");
        assert_eq!(manifest_key("", "f", "e"), "f/_manifests/e.json");
    }
}
