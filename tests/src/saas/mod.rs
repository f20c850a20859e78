//! Vendor dialects of the mock SaaS server, one module per vendor.

pub mod salesforce;
