//! ferry: SaaS to S3 data flows.
//!
//! The library behind the `ferry` CLI and the five Lambda functions: flow definitions
//! ([`flow`]), connectors ([`connector`]), the task pipeline ([`transform`]), encoders and key
//! layout ([`output`]), the ports and their adapters ([`ports`], [`adapters`]), the steps of a run
//! ([`steps`]) and the embedded state-machine engine ([`local`]).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod adapters;
pub mod catalog;
pub mod connector;
pub mod error;
pub mod flow;
#[cfg(feature = "aws")]
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;
pub mod model;
pub mod output;
pub mod ports;
pub mod schema;
pub mod steps;
pub mod time;
pub mod transform;

pub use error::{ErrorKind, StepError};
