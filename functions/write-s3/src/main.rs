//! ferry Lambda: the write-s3 step. Settings from the environment (FERRY_TABLE,
//! FERRY_STAGING_BUCKET, FERRY_EVENT_BUS, FERRY_SECRET_PREFIX, FERRY_KMS_KEY_ID), SDK clients
//! built once at cold start; each invocation's typed input goes to
//! `ferry::steps::write_s3::handle`, and a step error reaches Step Functions with its stable name
//! as `errorType`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use ferry::lambda::{self, Step};
use ferry::steps::write_s3;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::run(Step::WriteS3, |deps, input| async move {
        write_s3::handle(&deps, input).await
    })
    .await
}
