//! The run-store contract: what every `RunStore` (SQLite for the embedded engine, DynamoDB
//! deployed) must do, as one suite each store runs. The conditions that keep a run's commit
//! exactly-once live here, so the two stores cannot drift apart.

use chrono::{DateTime, Duration, Utc};
use ferry::error::StoreError;
use ferry::model::{
    CommittedSlice, PullMode, RunRecord, RunStatus, SliceLedger, TriggerType, Window,
};
use ferry::ports::{LeaseClaim, RunStore, StateCommit};
use std::future::Future;
use std::pin::Pin;

/// Moves a flow's watermark behind the store's back (another tool, a manual fix): (flow, RFC
/// 3339 timestamp with microseconds).
pub type BehindTheBack =
    dyn Fn(String, String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("timestamp")
}

fn claim(run: &str, expires: DateTime<Utc>) -> LeaseClaim {
    LeaseClaim::new(run, expires)
}

fn record(flow: &str, run: &str, at: DateTime<Utc>) -> RunRecord {
    RunRecord {
        run_id: run.into(),
        flow: flow.into(),
        flow_version: 1,
        execution_id: format!("exec:{run}"),
        status: RunStatus::Successful,
        trigger: TriggerType::OnDemand,
        mode: PullMode::Incremental,
        started_at: at,
        last_updated_at: at,
        window: Window {
            start: None,
            end: at,
        },
        records_processed: 1,
        records_filtered: 0,
        records_rejected: 0,
        records_written: 1,
        bytes_processed: 1,
        bytes_written: 1,
        files_written: 1,
        chunks: 1,
        schema_version: 1,
        manifest_key: Some("m".into()),
        max_cursor: None,
        watermark_after: Some(at),
        warnings: vec![],
        error: None,
    }
}

/// Run every contract check; `unique` flows keep the checks apart in a shared store.
pub async fn run_all<S, F>(store: &S, behind_the_back: F)
where
    S: RunStore,
    F: Fn(String, String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
{
    lease_semantics(store, "c-lease").await;
    a_commit_with_a_lost_lease_does_not_move_the_watermark(store, "c-lost").await;
    a_watermark_moved_by_someone_else_is_refused(store, "c-moved", &behind_the_back).await;
    a_retried_commit_is_a_success_and_changes_nothing(store, "c-retry").await;
    a_committed_run_is_never_counted_as_failed(store, "c-failed").await;
    a_stopped_run_releases_only_its_own_lease(store, "c-stop").await;
    the_lease_names_its_holder(store, "c-holder").await;
    committed_slices_hold_only_under_the_lease_and_move_the_watermark_forward(store, "c-slices")
        .await;
}

fn committed(run: &str, index: u32, start: DateTime<Utc>, end: DateTime<Utc>) -> CommittedSlice {
    CommittedSlice {
        run_id: run.into(),
        index,
        mode: PullMode::Incremental,
        start,
        end,
        manifest: format!("f/_manifests/{run}-slice-{index:06}.json"),
        records: 10,
    }
}

/// The slice ledger (`source.slice.commit: slice`): written only by the lease holder over the
/// revision it read, the watermark moved with it only forward, kept across the run's end and
/// the next run's start, replaced by a run's commit.
pub async fn committed_slices_hold_only_under_the_lease_and_move_the_watermark_forward<
    S: RunStore,
>(
    s: &S,
    f: &str,
) {
    let t0 = t("2026-03-01T00:00:00Z");
    let h = |n: i64| t0 + Duration::hours(n);
    assert_eq!(s.slice_ledger(f).await.unwrap(), SliceLedger::default());
    s.acquire_lease(f, &claim("s1", h(10)), t0).await.unwrap();
    let a = committed("s1", 1, h(1), h(2));
    // Slice 1 commits out of order: the watermark stays.
    assert!(s
        .put_slice_ledger(f, "s1", 0, &[a.clone()], None)
        .await
        .unwrap());
    let l = s.slice_ledger(f).await.unwrap();
    assert_eq!((l.rev, l.slices.clone()), (1, vec![a.clone()]));
    assert_eq!(s.get_state(f).await.unwrap().watermark, None);
    // A writer that read revision 0 is told to read again, and changes nothing.
    let b = committed("s1", 0, h(0), h(1));
    assert!(!s
        .put_slice_ledger(f, "s1", 0, &[b.clone()], Some(h(2)))
        .await
        .unwrap());
    assert_eq!(s.slice_ledger(f).await.unwrap(), l);
    // Slice 0 commits: the prefix reaches the end of slice 1.
    let both = vec![a.clone(), b.clone()];
    assert!(s
        .put_slice_ledger(f, "s1", 1, &both, Some(h(2)))
        .await
        .unwrap());
    assert_eq!(s.get_state(f).await.unwrap().watermark, Some(h(2)));
    // Never backwards.
    assert!(s
        .put_slice_ledger(f, "s1", 2, &both, Some(h(1)))
        .await
        .unwrap());
    assert_eq!(s.get_state(f).await.unwrap().watermark, Some(h(2)));
    // Another run cannot write it.
    let e = s
        .put_slice_ledger(f, "other", 3, &[], None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert_eq!(s.slice_ledger(f).await.unwrap().rev, 3);
    // The run fails: its committed slices stay for the next run, which may commit the run over
    // the moved watermark (its own start) and replace the ledger in the same write.
    s.record_failure(f, "s1").await.unwrap();
    assert_eq!(s.slice_ledger(f).await.unwrap().slices, both);
    let st = s.acquire_lease(f, &claim("s2", h(20)), h(3)).await.unwrap();
    assert_eq!(st.watermark, Some(h(2)));
    let e = s.put_slice_ledger(f, "s1", 3, &[], None).await.unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(_)),
        "the failed run's lease is gone: {e:?}"
    );
    let c = committed("s2", 0, h(2), h(3));
    assert!(s
        .put_slice_ledger(f, "s2", 3, &[a.clone(), b.clone(), c], Some(h(3)))
        .await
        .unwrap());
    let commit = StateCommit {
        watermark: Some(h(4)),
        schema_version: 1,
        schema: None,
        record: Some(record(f, "s2", h(4))),
        slices: Some(vec![]),
    };
    let st = s.commit_success(f, "s2", &commit).await.unwrap();
    assert_eq!(st.watermark, Some(h(4)));
    let l = s.slice_ledger(f).await.unwrap();
    assert!(l.slices.is_empty() && l.rev == 5, "{l:?}");
    s.delete_state(f).await.unwrap();
    assert_eq!(s.slice_ledger(f).await.unwrap(), SliceLedger::default());
}

pub async fn lease_semantics<S: RunStore>(s: &S, f: &str) {
    let t0 = t("2026-01-01T00:00:00Z");
    let st = s
        .acquire_lease(f, &claim("r1", t0 + Duration::minutes(1)), t0)
        .await
        .unwrap();
    assert_eq!(st.lease.as_ref().unwrap().run_id, "r1");
    assert_eq!(st.last_run_id.as_deref(), Some("r1"));
    // A retried start of the same run succeeds.
    s.acquire_lease(f, &claim("r1", t0 + Duration::minutes(2)), t0)
        .await
        .unwrap();
    // Renewal by the holder; by another run it is a conflict.
    s.renew_lease(f, "r1", t0 + Duration::minutes(5))
        .await
        .unwrap();
    assert!(matches!(
        s.renew_lease(f, "r2", t0).await,
        Err(StoreError::Conflict(_))
    ));
    // Held: refused before expiry (naming the holder and `ferry stop`), taken over after.
    match s
        .acquire_lease(
            f,
            &claim("r2", t0 + Duration::minutes(20)),
            t0 + Duration::minutes(4),
        )
        .await
    {
        Err(StoreError::Conflict(m)) => {
            assert!(m.contains("r1") && m.contains("ferry stop r1"), "{m}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let st = s
        .acquire_lease(
            f,
            &claim("r2", t0 + Duration::minutes(20)),
            t0 + Duration::minutes(5),
        )
        .await
        .unwrap();
    assert_eq!(st.lease.unwrap().run_id, "r2");
    // record_failure by a run that lost its lease counts nothing and releases nothing.
    assert_eq!(s.record_failure(f, "r1").await.unwrap(), 0);
    assert_eq!(s.get_state(f).await.unwrap().lease.unwrap().run_id, "r2");
    assert_eq!(s.record_failure(f, "r2").await.unwrap(), 1);
    assert!(s.get_state(f).await.unwrap().lease.is_none());
    // Commit: watermark, schema, failures reset, lease released, the record stored with it.
    s.acquire_lease(f, &claim("r3", t0 + Duration::minutes(20)), t0)
        .await
        .unwrap();
    let commit = StateCommit {
        watermark: Some(t0),
        schema_version: 2,
        schema: Some(serde_json::json!({"fp": "abc"})),
        record: Some(record(f, "r3", t0)),
        slices: None,
    };
    let st = s.commit_success(f, "r3", &commit).await.unwrap();
    assert_eq!(st.watermark, Some(t0));
    assert_eq!(st.schema_version, 2);
    assert_eq!(st.schema, Some(serde_json::json!({"fp": "abc"})));
    assert_eq!(st.consecutive_failures, 0);
    assert!(st.lease.is_none());
    assert_eq!(s.get_state(f).await.unwrap(), st);
    assert!(s.is_committed("r3").await.unwrap());
    assert_eq!(
        s.get_run("r3").await.unwrap().unwrap().status,
        RunStatus::Successful
    );
    // A commit without a watermark (complete / backfill) keeps it.
    s.acquire_lease(f, &claim("r4", t0 + Duration::minutes(20)), t0)
        .await
        .unwrap();
    let st = s
        .commit_success(
            f,
            "r4",
            &StateCommit {
                watermark: None,
                schema_version: 2,
                schema: None,
                record: None,
                slices: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(st.watermark, Some(t0));
    assert_eq!(st.schema, Some(serde_json::json!({"fp": "abc"})));
    s.delete_state(f).await.unwrap();
    assert_eq!(s.get_state(f).await.unwrap().watermark, None);
}

pub async fn a_commit_with_a_lost_lease_does_not_move_the_watermark<S: RunStore>(s: &S, f: &str) {
    let t0 = t("2026-01-01T00:00:00Z");
    // r1 takes the lease, stalls past its expiry; r2 takes over.
    s.acquire_lease(f, &claim("r1l", t0 + Duration::minutes(1)), t0)
        .await
        .unwrap();
    s.acquire_lease(
        f,
        &claim("r2l", t0 + Duration::minutes(30)),
        t0 + Duration::minutes(2),
    )
    .await
    .unwrap();
    let late = StateCommit {
        watermark: Some(t0 + Duration::hours(5)),
        schema_version: 1,
        schema: None,
        record: Some(record(f, "r1l", t0)),
        slices: None,
    };
    match s.commit_success(f, "r1l", &late).await {
        Err(StoreError::Conflict(m)) => {
            assert!(
                m.contains("no longer holds the lease") && m.contains("r2l"),
                "{m}"
            );
            assert!(m.contains("watermark was not moved"), "{m}");
        }
        other => panic!("expected a lease conflict, got {other:?}"),
    }
    let st = s.get_state(f).await.unwrap();
    assert_eq!(st.watermark, None);
    assert_eq!(st.lease.unwrap().run_id, "r2l");
    assert!(
        !s.is_committed("r1l").await.unwrap(),
        "a refused commit records nothing"
    );
    assert!(
        s.get_run("r1l").await.unwrap().is_none(),
        "nor the run record that came with it"
    );
    // Released leases are a conflict too.
    s.record_failure(f, "r2l").await.unwrap();
    assert!(
        matches!(s.commit_success(f, "r2l", &late).await, Err(StoreError::Conflict(m)) if m.contains("expired or was released"))
    );
    assert_eq!(s.get_state(f).await.unwrap().watermark, None);
}

pub async fn a_watermark_moved_by_someone_else_is_refused<S, F>(s: &S, f: &str, behind_the_back: &F)
where
    S: RunStore,
    F: Fn(String, String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
{
    let t0 = t("2026-01-01T00:00:00Z");
    s.acquire_lease(f, &claim("rm", t0 + Duration::minutes(30)), t0)
        .await
        .unwrap();
    behind_the_back(f.to_string(), "2030-01-01T00:00:00.000000Z".into()).await;
    let commit = StateCommit {
        watermark: Some(t0),
        schema_version: 1,
        schema: None,
        record: None,
        slices: None,
    };
    match s.commit_success(f, "rm", &commit).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("moved by someone else"), "{m}"),
        other => panic!("expected a watermark conflict, got {other:?}"),
    }
    assert_eq!(
        s.get_state(f).await.unwrap().watermark,
        Some(t("2030-01-01T00:00:00Z"))
    );
}

/// finalize's commit is retried when its answer is lost (SDK re-send, Lambda retry, Step
/// Functions retry): the retry must succeed — not fail into the failure path, which would delete
/// a committed run's output — and change nothing.
pub async fn a_retried_commit_is_a_success_and_changes_nothing<S: RunStore>(s: &S, f: &str) {
    let t0 = t("2026-02-01T00:00:00Z");
    s.acquire_lease(f, &claim("rr", t0 + Duration::minutes(30)), t0)
        .await
        .unwrap();
    let commit = StateCommit {
        watermark: Some(t0),
        schema_version: 1,
        schema: None,
        record: Some(record(f, "rr", t0)),
        slices: None,
    };
    let first = s.commit_success(f, "rr", &commit).await.unwrap();
    let again = s.commit_success(f, "rr", &commit).await.unwrap();
    assert_eq!(first, again);
    // Even after the next run took the lease and moved on.
    s.acquire_lease(
        f,
        &claim("rr2", t0 + Duration::hours(1)),
        t0 + Duration::minutes(1),
    )
    .await
    .unwrap();
    let st = s.commit_success(f, "rr", &commit).await.unwrap();
    assert_eq!(
        st.lease.unwrap().run_id,
        "rr2",
        "the retry did not touch the next run's lease"
    );
    assert_eq!(st.watermark, Some(t0));
}

pub async fn a_committed_run_is_never_counted_as_failed<S: RunStore>(s: &S, f: &str) {
    let t0 = t("2026-03-01T00:00:00Z");
    s.acquire_lease(f, &claim("rf", t0 + Duration::minutes(30)), t0)
        .await
        .unwrap();
    let commit = StateCommit {
        watermark: Some(t0),
        schema_version: 1,
        schema: None,
        record: None,
        slices: None,
    };
    s.commit_success(f, "rf", &commit).await.unwrap();
    assert_eq!(s.record_failure(f, "rf").await.unwrap(), 0);
    assert_eq!(s.get_state(f).await.unwrap().consecutive_failures, 0);
}

pub async fn a_stopped_run_releases_only_its_own_lease<S: RunStore>(s: &S, f: &str) {
    let t0 = t("2026-04-01T00:00:00Z");
    s.acquire_lease(f, &claim("rs", t0 + Duration::minutes(30)), t0)
        .await
        .unwrap();
    assert!(!s.release_lease(f, "other").await.unwrap());
    assert_eq!(s.get_state(f).await.unwrap().lease.unwrap().run_id, "rs");
    assert!(s.release_lease(f, "rs").await.unwrap());
    let st = s.get_state(f).await.unwrap();
    assert!(st.lease.is_none());
    assert_eq!(st.consecutive_failures, 0, "a stop is not a failure");
}

pub async fn the_lease_names_its_holder<S: RunStore>(s: &S, f: &str) {
    let t0 = t("2026-05-01T00:00:00Z");
    let mut c = claim("rh", t0 + Duration::minutes(30));
    c.holder = Some("local:host-a:4242".into());
    let st = s.acquire_lease(f, &c, t0).await.unwrap();
    assert_eq!(
        st.lease.unwrap().holder.as_deref(),
        Some("local:host-a:4242")
    );
    s.release_lease(f, "rh").await.unwrap();
    // A later claim without a holder (a deployed run) carries none.
    let st = s
        .acquire_lease(f, &claim("rh2", t0 + Duration::minutes(30)), t0)
        .await
        .unwrap();
    assert_eq!(st.lease.unwrap().holder, None);
}
