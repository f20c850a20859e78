//! The SQLite store (the embedded engine's) keeps the same run-store contract as DynamoDB:
//! tests/src/store_contract.rs, the suite both run.

use ferry::adapters::sqlite::SqliteStore;
use std::sync::Arc;

#[tokio::test]
async fn sqlite_keeps_the_run_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let store = SqliteStore::open(&path).unwrap();
    let path = Arc::new(path);
    ferry_tests::store_contract::run_all(&store, move |flow: String, watermark: String| {
        let path = path.clone();
        Box::pin(async move {
            // Someone writes the watermark behind the lease's back (another process, a manual fix).
            let c = rusqlite::Connection::open(&*path).unwrap();
            c.execute(
                "UPDATE flow_state SET watermark = ?2 WHERE flow = ?1",
                rusqlite::params![flow, watermark],
            )
            .unwrap();
        })
    })
    .await;
}
