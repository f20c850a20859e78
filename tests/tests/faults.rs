//! The fault campaign (tests/src/campaign.rs) in CI: a representative set of seeded schedules
//! across the sample, `rest`, Zendesk and Salesforce sources. `scripts/faults.sh` runs the full
//! set (1,000 schedules and more) in release mode and prints the same figures.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fault_schedules_commit_every_record_exactly_once() {
    let n: u64 = std::env::var("FERRY_FAULT_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let first: u64 = std::env::var("FERRY_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let runs: usize = std::env::var("FERRY_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let p: f64 = std::env::var("FERRY_FAULT_P")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.03);
    let figures = ferry_tests::campaign::run(first..first + n, runs, p).await;
    println!("{}", figures.report());
    assert!(
        figures.faults.values().sum::<u64>() > n,
        "the campaign injected too few faults to mean anything"
    );
    assert_eq!(figures.records_lost, 0, "{}", figures.report());
    assert_eq!(figures.records_duplicated, 0, "{}", figures.report());
    assert!(figures.violations.is_empty(), "{}", figures.report());
}

/// Schedules that once broke an invariant, kept as regression cases (at the probability they were
/// found with). Seeds 119, 125, 812 and 907 at p = 0.05 (the full campaign of 2026-12-03): a
/// transient failure reading the flow definition inside the failure path's cleanup skipped the
/// output's cleanup and the run was recorded as ended, leaving objects of a failed run in no
/// manifest. (A change to how a schedule draws from its seed changes what these seeds run; the
/// full campaign in scripts/faults.sh keeps finding such cases.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_that_once_broke_an_invariant_stay_clean() {
    let figures = ferry_tests::campaign::run_seeds([119, 125, 812, 907], 3, 0.05).await;
    println!("{}", figures.report());
    assert_eq!(figures.records_lost, 0, "{}", figures.report());
    assert_eq!(figures.records_duplicated, 0, "{}", figures.report());
    assert!(figures.violations.is_empty(), "{}", figures.report());
}

/// The deployed shape under the same attack: faults injected into the real functions' AWS calls
/// by the harness's IAM gate (crashes kill the function's process), the independent ASL
/// interpreter's retries and the stack's reaper playing out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployed_stack_fault_schedules_commit_every_record_exactly_once() {
    let n: u64 = std::env::var("FERRY_DEPLOYED_FAULT_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let p: f64 = std::env::var("FERRY_FAULT_P")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.08);
    let stack = ferry_tests::stack::Stack::deploy().await;
    let mut figures = ferry_tests::campaign::Figures::default();
    for seed in 1..=n {
        let o = ferry_tests::campaign::deployed_schedule(&stack, seed, 2, p).await;
        figures.add(seed, ferry_tests::campaign::SourceKind::Sample, o);
    }
    println!("deployed stack:\n{}", figures.report());
    assert!(
        figures.faults.values().sum::<u64>() > 0,
        "no fault injected"
    );
    assert_eq!(figures.records_lost, 0, "{}", figures.report());
    assert_eq!(figures.records_duplicated, 0, "{}", figures.report());
    assert!(figures.violations.is_empty(), "{}", figures.report());
}
