//! Vendor-dialect mock servers, one module per SaaS.

pub mod hubspot;
pub mod servicenow;
