//! Adapters behind the ports: embedded ones (SQLite, local directory, secrets file, event log)
//! for laptops and tests, in-memory ones for unit tests, AWS ones for production.

pub mod event_log;
pub mod localfs;
pub mod memory;
pub mod secrets_file;
pub mod sqlite;

// AWS (production).
pub mod aws;
pub mod dynamodb;
pub mod eventbridge;
pub mod metrics;
pub mod s3;
pub mod scheduler;
pub mod secretsmanager;
