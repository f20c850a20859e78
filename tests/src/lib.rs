
pub mod aws;
