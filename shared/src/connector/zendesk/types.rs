//! The zendesk connector's entities and fields, and how its values are typed.

use super::*;

/// How an entity is paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    /// Cursor-based incremental export: `start_time`, then `cursor`, until `end_of_stream`.
    CursorExport,
    /// Time-based incremental export: `start_time`, next `start_time=end_time`.
    TimeExport,
    /// Cursor pagination: `page[size]`, `page[after]`, `meta.has_more`.
    CursorList,
}

pub(super) struct EntityDef {
    pub(super) name: &'static str,
    pub(super) label: &'static str,
    pub(super) path: &'static str,
    /// The response key holding the records.
    pub(super) key: &'static str,
    pub(super) api: Api,
    /// The timestamp the API orders and filters by (boundary repeats share it).
    pub(super) sort_field: &'static str,
    pub(super) fields: fn() -> Vec<FieldInfo>,
}

pub(super) const ENTITIES: &[EntityDef] = &[
    EntityDef {
        name: "tickets",
        label: "Tickets (incremental export, including deleted tickets)",
        path: "/api/v2/incremental/tickets/cursor.json",
        key: "tickets",
        api: Api::CursorExport,
        sort_field: "generated_timestamp",
        fields: ticket_fields,
    },
    EntityDef {
        name: "users",
        label: "Users (incremental export, including deleted users)",
        path: "/api/v2/incremental/users/cursor.json",
        key: "users",
        api: Api::CursorExport,
        sort_field: "updated_at",
        fields: user_fields,
    },
    EntityDef {
        name: "organizations",
        label: "Organizations (time-based incremental export)",
        path: "/api/v2/incremental/organizations.json",
        key: "organizations",
        api: Api::TimeExport,
        sort_field: "updated_at",
        fields: organization_fields,
    },
    EntityDef {
        name: "groups",
        label: "Groups",
        path: "/api/v2/groups.json",
        key: "groups",
        api: Api::CursorList,
        sort_field: "updated_at",
        fields: group_fields,
    },
    EntityDef {
        name: "ticket_fields",
        label: "Ticket fields",
        path: "/api/v2/ticket_fields.json",
        key: "ticket_fields",
        api: Api::CursorList,
        sort_field: "updated_at",
        fields: ticket_field_fields,
    },
];

pub(super) fn ticket_fields() -> Vec<FieldInfo> {
    vec![
        int("id").key(),
        s("url"),
        s("external_id"),
        s("type"),
        s("subject"),
        s("raw_subject"),
        s("description"),
        s("priority"),
        s("status").required(),
        s("recipient"),
        int("requester_id"),
        int("submitter_id"),
        int("assignee_id"),
        int("organization_id"),
        int("group_id"),
        int("brand_id"),
        int("problem_id"),
        ints("collaborator_ids"),
        ints("follower_ids"),
        strings("tags"),
        json("custom_fields"),
        json("via"),
        json("satisfaction_rating"),
        boolean("has_incidents"),
        boolean("is_public"),
        ts("due_at"),
        ts("created_at").incremental(),
        ts("updated_at").required().incremental(),
        ts("generated_timestamp").incremental(),
    ]
}

pub(super) fn user_fields() -> Vec<FieldInfo> {
    vec![
        int("id").key(),
        s("url"),
        s("name"),
        s("email"),
        s("phone"),
        s("role"),
        int("role_type"),
        int("organization_id"),
        int("default_group_id"),
        s("locale"),
        s("time_zone"),
        s("external_id"),
        boolean("active"),
        boolean("verified"),
        boolean("suspended"),
        boolean("shared"),
        boolean("restricted_agent"),
        strings("tags"),
        json("user_fields"),
        ts("last_login_at"),
        ts("created_at").incremental(),
        ts("updated_at").required().incremental(),
    ]
}

pub(super) fn organization_fields() -> Vec<FieldInfo> {
    vec![
        int("id").key(),
        s("url"),
        s("name"),
        s("external_id"),
        strings("domain_names"),
        s("details"),
        s("notes"),
        int("group_id"),
        boolean("shared_tickets"),
        boolean("shared_comments"),
        strings("tags"),
        json("organization_fields"),
        ts("created_at").incremental(),
        ts("updated_at").required().incremental(),
        ts("deleted_at"),
    ]
}

pub(super) fn group_fields() -> Vec<FieldInfo> {
    vec![
        int("id").key(),
        s("url"),
        s("name"),
        s("description"),
        boolean("default"),
        boolean("deleted"),
        boolean("is_public"),
        ts("created_at").incremental(),
        ts("updated_at").required().incremental(),
    ]
}

pub(super) fn ticket_field_fields() -> Vec<FieldInfo> {
    vec![
        int("id").key(),
        s("url"),
        s("type"),
        s("title"),
        s("description"),
        boolean("active"),
        boolean("required"),
        int("position"),
        json("custom_field_options"),
        ts("created_at").incremental(),
        ts("updated_at").required().incremental(),
    ]
}

pub(super) fn entity_def(entity: &str) -> Result<&'static EntityDef, SourceError> {
    normalize::find_entity("zendesk", ENTITIES, |e| e.name, entity)
}
