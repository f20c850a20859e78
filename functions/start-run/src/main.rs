//! ferry Lambda: the start-run step. Settings from the environment (FERRY_TABLE,
//! FERRY_STAGING_BUCKET, FERRY_EVENT_BUS, FERRY_SECRET_PREFIX, FERRY_KMS_KEY_ID), SDK clients
//! built once at cold start; each invocation's typed input goes to
//! `ferry::steps::start_run::handle_event` (a run to start, or
//! "Plan Next Round" of its slices), and a step error reaches Step Functions with its stable name
//! as `errorType`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use ferry::lambda::{self, Step};
use ferry::steps::start_run;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::run(Step::StartRun, |deps, input| async move {
        start_run::handle_event(&deps, input).await
    })
    .await
}
