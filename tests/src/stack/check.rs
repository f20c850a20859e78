//! What a committed run must look like on the stack: the run record, the manifest, exactly the
//! manifest's objects under the flow's prefix (read back by pyarrow), the watermark, a free
//! lease and an empty staging prefix.

use super::{Execution, Stack};
use ferry::model::{Manifest, RunRecord, RunStatus};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A Python with pyarrow: `$FERRY_TEST_PYTHON`, else the project venv.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = super::repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "no Python with pyarrow: run scripts/setup-venv.sh (or scripts/test.sh), or set FERRY_TEST_PYTHON"
    );
    p
}

/// Read output files with pyarrow (Parquet, CSV or JSON lines, gzip or not) into
/// `{"rows": n, "schema": {column: type}, "records": [...]}` (records as JSON, sorted by `sort`).
pub fn pyarrow_read(files: &[PathBuf], format: &str, sort: Option<&str>) -> Value {
    let script = r#"
import json, os, sys, gzip, io
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.csv as pcsv, pyarrow.json as pjson
fmt, sort, files = sys.argv[1], sys.argv[2], sys.argv[3:]
tables = []
for f in files:
    if fmt == 'parquet':
        tables.append(pq.read_table(f))
    else:
        data = open(f, 'rb').read()
        if data[:2] == b'\x1f\x8b':
            data = gzip.decompress(data)
        if fmt == 'csv':
            tables.append(pcsv.read_csv(io.BytesIO(data)))
        else:
            tables.append(pjson.read_json(io.BytesIO(data)))
if not tables:
    print(json.dumps({"rows": 0, "schema": {}, "records": []})); sys.exit(0)
t = pa.concat_tables(tables, promote_options="permissive")
recs = t.to_pylist()
if sort:
    recs.sort(key=lambda r: str(r.get(sort)))
print(json.dumps({"rows": t.num_rows, "schema": {f.name: str(f.type) for f in t.schema}, "records": recs}, default=str))
# Done: leave without tearing down pyarrow's thread pools, which under load has aborted the
# process after the answer was printed ("terminate called without an active exception").
sys.stdout.flush()
os._exit(0)
"#;
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(format)
        .arg(sort.unwrap_or(""))
        .args(files)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "pyarrow could not read the output: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pyarrow output is JSON")
}

/// A committed run, as found on the stack.
#[derive(Debug)]
pub struct Committed {
    pub record: RunRecord,
    pub manifest: Manifest,
    pub manifest_key: String,
    /// Data objects under the flow's prefix (manifests and rejected records excluded).
    pub keys: Vec<String>,
    pub files: Vec<PathBuf>,
    /// pyarrow's reading of the files.
    pub read: Value,
}

/// Split `s3://bucket/key`.
pub fn split_uri(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("s3://").unwrap_or(uri);
    let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
    (b.to_string(), k.to_string())
}

impl Stack {
    /// Every key in `bucket` under `prefix`.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let s3 = ferry::adapters::aws::s3_client(&self.conf);
        let mut out = vec![];
        let mut token = None;
        loop {
            let r = s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list objects");
            out.extend(
                r.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match r.next_continuation_token() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        out.sort();
        out
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let s3 = ferry::adapters::aws::s3_client(&self.conf);
        s3.get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get s3://{bucket}/{key}: {e:?}"))
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec()
    }

    /// Download objects into `dir`, keeping their extensions.
    pub async fn download(&self, bucket: &str, keys: &[String], dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for (i, k) in keys.iter().enumerate() {
            let name = k.rsplit('/').next().unwrap_or("object");
            let p = dir.join(format!("{i:05}-{name}"));
            std::fs::write(&p, self.get(bucket, k).await).expect("write download");
            out.push(p);
        }
        out
    }

    /// Assert that `exec` committed its run: Successful record, manifest listing exactly the
    /// data objects under `prefix` of the output bucket written by this run, readable by
    /// pyarrow with the record's row count; watermark at the window end (incremental runs);
    /// lease free; staging prefix empty.
    pub async fn assert_committed(
        &self,
        exec: &Execution,
        prefix: &str,
        format: &str,
        sort: Option<&str>,
    ) -> Committed {
        assert!(
            exec.succeeded(),
            "execution {} ended {}: {:?}: {:?}\n{}",
            exec.arn,
            exec.status,
            exec.error,
            exec.cause,
            self.logs()
        );
        let run_id = exec
            .arn
            .rsplit(':')
            .next()
            .expect("execution name")
            .to_string();
        let deps = self.deps();
        let record = deps
            .runs
            .get_run(&run_id)
            .await
            .expect("run store")
            .unwrap_or_else(|| panic!("no run record for {run_id}"));
        assert_eq!(record.status, RunStatus::Successful, "{record:?}");
        let manifest_uri = record
            .manifest_key
            .clone()
            .expect("a successful run names its manifest");
        let (bucket, manifest_key) = split_uri(&manifest_uri);
        assert_eq!(
            bucket, self.output_bucket,
            "manifest outside the output bucket"
        );
        let manifest: Manifest =
            serde_json::from_slice(&self.get(&bucket, &manifest_key).await).expect("manifest JSON");
        assert_eq!(manifest.run_id, run_id);
        assert_eq!(manifest.records_written, record.records_written);
        let mut listed: Vec<String> = manifest.objects.iter().map(|o| o.key.clone()).collect();
        // Slices that committed on their own list their objects in their own manifests.
        for key in &manifest.slices {
            let m: Manifest =
                serde_json::from_slice(&self.get(&bucket, key).await).expect("slice manifest JSON");
            assert_eq!(m.run_id, run_id, "slice manifest {key} of another run");
            assert!(m.slice.is_some(), "{key} is not a slice's manifest");
            listed.extend(m.objects.iter().map(|o| o.key.clone()));
        }
        listed.sort();
        let keys: Vec<String> = self
            .keys(&bucket, prefix)
            .await
            .into_iter()
            .filter(|k| {
                !k.contains("/_manifests/") && !k.contains("/_rejected/") && k.contains(&run_id)
            })
            .collect();
        assert_eq!(
            keys, listed,
            "objects of run {run_id} under {prefix} are exactly the manifest's"
        );
        let state = deps.runs.get_state(&record.flow).await.expect("state");
        assert!(state.lease.is_none(), "lease still held: {:?}", state.lease);
        if record.mode == ferry::model::PullMode::Incremental {
            assert_eq!(
                state.watermark,
                Some(record.window.end),
                "watermark at the window end"
            );
        }
        let staging = self
            .keys(
                &self.staging_bucket,
                &format!("staging/{}/{}/", record.flow, run_id),
            )
            .await;
        assert!(staging.is_empty(), "staging left behind: {staging:?}");
        let dir = self.dir().join(&run_id);
        std::fs::create_dir_all(&dir).expect("download dir");
        let files = self.download(&bucket, &keys, &dir).await;
        let read = pyarrow_read(&files, format, sort);
        assert_eq!(
            read["rows"].as_u64(),
            Some(record.records_written),
            "rows read back = records written"
        );
        Committed {
            record,
            manifest,
            manifest_key,
            keys,
            files,
            read,
        }
    }
}
