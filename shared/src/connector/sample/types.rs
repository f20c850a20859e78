//! The sample connector's entities and fields, and how its values are typed.

use super::*;

pub(super) const ENTITIES: &[(&str, &str)] = &[
    ("accounts", "Companies, with a nested billing address"),
    ("contacts", "People at accounts"),
    ("opportunities", "Deals with amounts and stages"),
    ("tickets", "Support tickets with tags"),
];
pub(super) fn decimal(cents: u64, scale: u32) -> Value {
    let d = 10u64.pow(scale);
    json!(format!(
        "{}.{:0width$}",
        cents / d,
        cents % d,
        width = scale as usize
    ))
}

pub(super) fn fields(entity: &str) -> Vec<FieldInfo> {
    use FieldType::*;
    let s = |n: &str| FieldInfo::new(n, String);
    let ts = |n: &str| FieldInfo::new(n, Timestamp).required();
    let common = [ts("created_at"), ts("updated_at").incremental()];
    let mut f = match entity {
        "accounts" => vec![
            s("id").key(),
            s("name").required(),
            s("industry"),
            s("country"),
            FieldInfo::new("employees", Integer).required(),
            FieldInfo::new(
                "annual_revenue",
                Decimal {
                    precision: 18,
                    scale: 2,
                },
            )
            .required(),
            FieldInfo::new("rating", Float).required(),
            FieldInfo::new("is_active", Boolean).required(),
            s("status").required(),
            s("phone").required(),
            FieldInfo::new(
                "address",
                Object {
                    fields: vec![s("street"), s("city"), s("postal_code")],
                },
            ),
            s("internal_notes"),
        ],
        "contacts" => vec![
            s("id").key(),
            s("account_id").required(),
            s("first_name").required(),
            s("last_name").required(),
            s("email").required(),
            s("phone"),
            s("title").required(),
            s("country").required(),
            FieldInfo::new("do_not_call", Boolean).required(),
            FieldInfo::new("score", Integer).required(),
        ],
        "opportunities" => vec![
            s("id").key(),
            s("account_id").required(),
            s("name").required(),
            s("stage").required(),
            FieldInfo::new(
                "amount",
                Decimal {
                    precision: 18,
                    scale: 2,
                },
            )
            .required(),
            FieldInfo::new("probability", Float).required(),
            FieldInfo::new("close_date", Date).required(),
            FieldInfo::new("is_closed", Boolean).required(),
        ],
        _ => vec![
            FieldInfo::new("id", Integer).key(),
            s("subject").required(),
            s("status").required(),
            s("priority").required(),
            s("requester_email").required(),
            FieldInfo::new(
                "tags",
                Array {
                    item: Box::new(String),
                },
            ),
            FieldInfo::new("satisfaction", Integer),
        ],
    };
    f.extend(common);
    f
}

pub(super) const PUSHDOWN_OPS: &[crate::flow::tasks::FilterOp] = {
    use crate::flow::tasks::FilterOp::*;
    &[
        Equal,
        NotEqual,
        Less,
        LessOrEqual,
        Greater,
        GreaterOrEqual,
        Between,
        In,
        IsNull,
        IsNotNull,
    ]
};
