//! The `ferry` command's integration tests, one binary: each file is a module
//! (`cargo nextest run --workspace canary::`).

mod canary;
mod catalog;
mod cli;
mod first_hour;
mod import;
mod remote;
mod saas;
mod stop_local;
mod support;
