//! Checks of a flow against its source — what only the connector knows: the profile exists and
//! its credentials work, the entity exists, the incremental field and every field a task names
//! exist with a type that fits, filter values parse as the field's type. Read-only: the
//! connector's describe / list-entities calls, and for connectors whose description needs no
//! request, one page of one record.

use crate::connector::{self, ConnectorContext, FieldType, ReadRequest, Source, SourceError};
use crate::flow::tasks::FilterSpec;
use crate::flow::{FieldError, Flow};

/// What checking a flow against its source found.
#[derive(Debug, Default)]
pub struct SourceCheck {
    pub errors: Vec<FieldError>,
    /// The filters the source applies itself (pushed down), when the flow is valid.
    pub pushed_down: Vec<FilterSpec>,
}

/// A source error as a flow problem, at the field it is about.
pub fn source_problem(e: &SourceError) -> FieldError {
    match e {
        SourceError::Config { field, message } => FieldError::new(field.clone(), message.clone()),
        SourceError::Auth { .. } => FieldError::new("source.profile", e.to_string()),
        SourceError::Throttled { message, .. }
        | SourceError::Transient { message }
        | SourceError::Unavailable { message } => {
            FieldError::new(
                "source",
                format!("the source could not be reached ({message}); try again, or check offline with `--offline`"),
            )
        }
        SourceError::Rejected { message } | SourceError::Fatal { message } => {
            FieldError::new("source", format!("the source refused the check: {message}"))
        }
    }
}

/// Build the flow's connector (loading its profile) and check the flow against it.
pub async fn check_flow(flow: &Flow, ctx: &ConnectorContext) -> SourceCheck {
    match connector::build(&flow.source, ctx).await {
        Ok(source) => against_source(flow, source.as_ref()).await,
        Err(e) => SourceCheck {
            errors: vec![source_problem(&e)],
            ..Default::default()
        },
    }
}

/// Check the flow against a built source.
pub async fn against_source(flow: &Flow, source: &dyn Source) -> SourceCheck {
    let mut out = SourceCheck::default();
    let entity = &flow.source.entity;
    let description = match source.describe(entity).await {
        Ok(d) => d,
        Err(e) => {
            let mut p = source_problem(&e);
            if matches!(e, SourceError::Config { .. } | SourceError::Rejected { .. }) {
                if let Ok(list) = source.list_entities().await {
                    if !list.iter().any(|x| &x.name == entity) {
                        let names: Vec<&str> = list.iter().map(|x| x.name.as_str()).collect();
                        p = FieldError::new(
                            "source.entity",
                            match crate::flow::collect::closest(entity, names.iter().copied()) {
                                Some(c) => format!(
                                    "the {} source has no entity '{entity}'; did you mean `{c}`?",
                                    flow.source.connector
                                ),
                                None => format!(
                                    "the {} source has no entity '{entity}'; it has: {}",
                                    flow.source.connector,
                                    names
                                        .iter()
                                        .take(30)
                                        .copied()
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            },
                        );
                    }
                }
            }
            out.errors.push(p);
            return out;
        }
    };
    if let Some(inc) = &flow.source.incremental {
        let datetime: Vec<&str> = description
            .fields
            .iter()
            .filter(|f| {
                f.incremental || matches!(f.data_type, FieldType::Timestamp | FieldType::Date)
            })
            .map(|f| f.name.as_str())
            .collect();
        match description.fields.iter().find(|f| f.name == inc.field) {
            None => out.errors.push(FieldError::new(
                "source.incremental.field",
                format!(
                    "'{}' is not a field of {entity}; datetime fields: {}",
                    inc.field,
                    datetime.join(", ")
                ),
            )),
            Some(f) if !matches!(f.data_type, FieldType::Timestamp | FieldType::Date) => {
                out.errors.push(FieldError::new(
                    "source.incremental.field",
                    format!(
                        "'{}' is a {} field, not a datetime; use one of: {}",
                        inc.field,
                        type_name(&f.data_type),
                        datetime.join(", ")
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let schema = crate::schema::arrow_schema(&description.fields);
    match crate::transform::Plan::compile(&flow.tasks, schema) {
        Ok(plan) => out.pushed_down = plan.split_pushdown(&source.pushdown()).0,
        Err(errs) => out.errors.extend(errs),
    }
    // The credentials: describe made an authenticated request, except for these connectors.
    if out.errors.is_empty()
        && flow.source.profile.is_some()
        && connector::registry::REGISTRY
            .get(&flow.source.connector)
            .is_some_and(|c| c.static_description)
    {
        let req = ReadRequest {
            entity: entity.clone(),
            window: None,
            incremental_field: None,
            page_size: Some(1),
            filters: vec![],
        };
        if let Err(e) = source.read_page(&req, None).await {
            out.errors.push(source_problem(&e));
        }
    }
    out
}

fn type_name(t: &FieldType) -> &'static str {
    match t {
        FieldType::String => "string",
        FieldType::Integer => "integer",
        FieldType::Float => "float",
        FieldType::Decimal { .. } => "decimal",
        FieldType::Boolean => "boolean",
        FieldType::Timestamp => "timestamp",
        FieldType::Date => "date",
        FieldType::Object { .. } => "object",
        FieldType::Array { .. } => "array",
        FieldType::Json => "JSON",
    }
}

/// A filter as a line of text: `status not_equal deleted`.
pub fn describe_filter(f: &FilterSpec) -> String {
    let v = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match (&f.any, &f.all) {
        (Some(l), _) => format!(
            "({})",
            l.iter()
                .map(describe_filter)
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        (_, Some(l)) => format!(
            "({})",
            l.iter()
                .map(describe_filter)
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        _ => {
            let field = f.field.clone().unwrap_or_default();
            let op = f.op.map(|o| o.as_str()).unwrap_or("?");
            let mut s = format!("{field} {op}");
            if let Some(x) = &f.value {
                s.push_str(&format!(" {}", v(x)));
            }
            if let Some(xs) = &f.values {
                s.push_str(&format!(
                    " [{}]",
                    xs.iter().map(v).collect::<Vec<_>>().join(", ")
                ));
            }
            if let (Some(lo), Some(hi)) = (&f.min, &f.max) {
                s.push_str(&format!(" {} and {}", v(lo), v(hi)));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemorySecrets;
    use std::sync::Arc;

    fn flow(extra_tasks: &str, inc: &str) -> Flow {
        Flow::parse(
            &format!(
                "name: ff\nsource:\n  connector: sample\n  entity: accounts\n  incremental: {{ field: {inc} }}\ndestination:\n  local: out\ntasks:\n{extra_tasks}"
            ),
            "f.yaml",
        )
        .unwrap()
    }

    fn ctx() -> ConnectorContext {
        ConnectorContext {
            secrets: Arc::new(MemorySecrets::default()),
        }
    }

    #[tokio::test]
    async fn fields_types_and_values_are_checked_against_the_source() {
        let f = flow(
            "  - filter: { field: employees, op: greater, value: lots }\n  - filter: { field: colour, op: equal, value: red }\n  - mask: { field: phone }\n",
            "name",
        );
        let c = check_flow(&f, &ctx()).await;
        let paths: Vec<&str> = c.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(
            paths.contains(&"source.incremental.field"),
            "{:?}",
            c.errors
        );
        assert!(paths.contains(&"tasks[0].filter.value"), "{:?}", c.errors);
        assert!(paths.contains(&"tasks[1].filter.field"), "{:?}", c.errors);
        assert_eq!(c.errors.len(), 3, "{:?}", c.errors);
    }

    #[tokio::test]
    async fn a_valid_flow_reports_what_is_pushed_down() {
        let f = flow(
            "  - filter: { field: status, op: not_equal, value: deleted }\n",
            "updated_at",
        );
        let c = check_flow(&f, &ctx()).await;
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.pushed_down.len(), 1);
        assert_eq!(
            describe_filter(&c.pushed_down[0]),
            "status not_equal deleted"
        );
    }

    #[tokio::test]
    async fn unknown_entity_and_missing_profile() {
        let mut f = flow("  - map_all: {}\n", "updated_at");
        f.source.entity = "acounts".into();
        let c = check_flow(&f, &ctx()).await;
        assert_eq!(c.errors[0].path, "source.entity", "{:?}", c.errors);
        assert!(c.errors[0].message.contains("accounts"), "{:?}", c.errors);

        let mut f = flow("  - map_all: {}\n", "updated_at");
        f.source.connector = "zendesk".into();
        f.source.profile = Some("nope".into());
        f.source
            .properties
            .insert("subdomain".into(), "acme".into());
        let c = check_flow(&f, &ctx()).await;
        assert_eq!(c.errors[0].path, "source.profile", "{:?}", c.errors);
        assert!(
            c.errors[0].message.contains("no such profile"),
            "{:?}",
            c.errors
        );
    }
}
