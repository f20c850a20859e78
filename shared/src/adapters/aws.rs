//! Configuration and SDK clients of the AWS adapters.
//!
//! Settings come from the environment (`FERRY_TABLE`, `FERRY_STAGING_BUCKET`, `FERRY_EVENT_BUS`,
//! `FERRY_SECRET_PREFIX`, `FERRY_KMS_KEY_ID`, `FERRY_STATE_MACHINE_ARN`,
//! `FERRY_SCHEDULER_ROLE_ARN`); endpoints and credentials come from the SDK's own chain, so a
//! local AWS-protocol server is reached through `AWS_ENDPOINT_URL` with no special code path.

use super::{
    dynamodb::DynamoStore, eventbridge::EventBridgeSink, s3::S3Blobs, s3::S3Resolver,
    secretsmanager::SecretsManagerStore,
};
use crate::ports::SystemClock;
use crate::steps::{Deps, Settings};
use std::sync::Arc;

/// Default name prefix of connector-profile secrets.
pub const DEFAULT_SECRET_PREFIX: &str = "ferry/profiles/";
/// Default EventBridge bus of run reports (a dedicated bus; see docs/aws.md).
pub const DEFAULT_EVENT_BUS: &str = "ferry";

/// A required setting is missing or empty.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {var} is not set: {hint}")]
pub struct ConfigError {
    pub var: &'static str,
    pub hint: &'static str,
}

/// Where ferry's AWS resources are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// `FERRY_TABLE`: the single DynamoDB table (flows, state, runs, chunk results).
    pub table: String,
    /// `FERRY_STAGING_BUCKET`: staging objects between steps.
    pub staging_bucket: String,
    /// `FERRY_EVENT_BUS`: run reports and flow events (default `ferry`).
    pub event_bus: String,
    /// `FERRY_SECRET_PREFIX`: secret name = prefix + profile (default `ferry/profiles/`).
    pub secret_prefix: String,
    /// `FERRY_KMS_KEY_ID`: SSE-KMS key for staging, new secrets and destinations without their own.
    pub kms_key_id: Option<String>,
    /// `FERRY_STACK_NAME`: the stack; secrets ferry creates are tagged `ferry:stack=<name>`, the
    /// tag the functions' roles require to read a profile's secret (docs/security.md).
    pub stack_name: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl AwsSettings {
    /// Read the settings the Lambda functions need.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(AwsSettings {
            table: var("FERRY_TABLE").ok_or(ConfigError {
                var: "FERRY_TABLE",
                hint: "set it to the DynamoDB table of the deployed stack (output `TableName`)",
            })?,
            staging_bucket: var("FERRY_STAGING_BUCKET").ok_or(ConfigError {
                var: "FERRY_STAGING_BUCKET",
                hint: "set it to the staging bucket of the deployed stack (output `StagingBucket`)",
            })?,
            event_bus: var("FERRY_EVENT_BUS").unwrap_or_else(|| DEFAULT_EVENT_BUS.into()),
            secret_prefix: var("FERRY_SECRET_PREFIX")
                .unwrap_or_else(|| DEFAULT_SECRET_PREFIX.into()),
            kms_key_id: var("FERRY_KMS_KEY_ID"),
            stack_name: var("FERRY_STACK_NAME"),
        })
    }
}

/// The SDK configuration from the default chain (region, credentials, `AWS_ENDPOINT_URL`).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// An S3 client. Path-style addressing is forced when an endpoint override is set (a local
/// AWS-protocol server cannot serve `bucket.127.0.0.1`), or when `FERRY_S3_FORCE_PATH_STYLE=1`.
pub fn s3_client(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = conf.endpoint_url().is_some()
        || var("AWS_ENDPOINT_URL_S3").is_some()
        || var("FERRY_S3_FORCE_PATH_STYLE").is_some_and(|v| v == "1" || v == "true");
    let s3 = aws_sdk_s3::config::Builder::from(conf)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// The SDK clients ferry uses, built once per process.
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub glue: aws_sdk_glue::Client,
}

impl Clients {
    pub fn new(conf: &aws_config::SdkConfig) -> Self {
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(conf),
            s3: s3_client(conf),
            secrets: aws_sdk_secretsmanager::Client::new(conf),
            events: aws_sdk_eventbridge::Client::new(conf),
            glue: aws_sdk_glue::Client::new(conf),
        }
    }
}

/// The steps' dependencies over the AWS adapters.
pub fn aws_deps(clients: &Clients, settings: &AwsSettings) -> Deps {
    let store = Arc::new(DynamoStore::new(
        clients.dynamodb.clone(),
        settings.table.clone(),
    ));
    let staging = S3Blobs::new(clients.s3.clone(), settings.staging_bucket.clone())
        .with_kms_key(settings.kms_key_id.clone());
    Deps {
        flows: store.clone(),
        runs: store,
        staging: Arc::new(staging),
        destinations: Arc::new(S3Resolver::new(
            clients.s3.clone(),
            settings.kms_key_id.clone(),
        )),
        secrets: Arc::new(
            SecretsManagerStore::new(clients.secrets.clone(), settings.secret_prefix.clone())
                .with_kms_key(settings.kms_key_id.clone())
                .with_stack_tag(settings.stack_name.clone()),
        ),
        events: Arc::new(EventBridgeSink::new(
            clients.events.clone(),
            settings.event_bus.clone(),
            Settings::default().event_source,
        )),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(crate::ports::NoMetrics),
        catalog: Arc::new(super::glue::GlueCatalog::new(clients.glue.clone())),
        settings: Settings::default(),
    }
}

/// Settings and clients from the environment, then the deps: what each Lambda does at cold
/// start (with EMF metrics on stdout).
pub async fn deps_from_env() -> Result<Deps, ConfigError> {
    let settings = AwsSettings::from_env()?;
    let conf = sdk_config().await;
    let mut deps = aws_deps(&Clients::new(&conf), &settings);
    // In Lambda, metrics are EMF lines on stdout, which CloudWatch Logs turns into metrics.
    deps.metrics = Arc::new(super::metrics::Emf::stdout());
    Ok(deps)
}
