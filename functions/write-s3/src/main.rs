//! ferry Lambda: the write-s3 step. Settings from the environment (FERRY_TABLE,
//! FERRY_STAGING_BUCKET, FERRY_EVENT_BUS, FERRY_SECRET_PREFIX, FERRY_KMS_KEY_ID), SDK clients
//! built once at cold start, each invocation runs `ferry::steps::write_s3::handle`;
//! a step error reaches Step Functions with its stable name as `errorType`.

use ferry::lambda::{self, Step};
use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init();
    let deps = ferry::adapters::aws::deps_from_env().await?;
    lambda_runtime::run(service_fn(|event| {
        lambda::handle(&deps, Step::WriteS3, event)
    }))
    .await
}
