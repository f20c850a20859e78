//! The sample connector's flow properties: parsed, checked, with their defaults.

use super::*;

pub(super) const DEFAULT_RECORDS: u64 = 10_000;
pub(super) const DEFAULT_PAGE: u32 = 1_000;

pub(crate) fn validate(entity: &str, props: &serde_json::Map<String, Value>) -> Vec<FieldError> {
    let mut errs = vec![];
    if !entity.is_empty() && !ENTITIES.iter().any(|(e, _)| *e == entity) {
        errs.push(FieldError::new(
            "source.entity",
            format!(
                "the sample connector has no entity '{entity}'; use one of: {}",
                ENTITIES
                    .iter()
                    .map(|(e, _)| *e)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if let Err(SourceError::Config { field, message }) = SampleSource::from_properties(props) {
        errs.push(FieldError::new(field, message));
    }
    errs
}
