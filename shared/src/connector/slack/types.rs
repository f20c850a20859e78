//! The slack connector's entities and fields, and how its values are typed.

use super::*;

pub(super) struct EntityDef {
    pub(super) name: &'static str,
    pub(super) label: &'static str,
    pub(super) method: &'static str,
    pub(super) key: &'static str,
    /// The field a window applies to when the flow names none.
    pub(super) default_incremental: &'static str,
    pub(super) fields: fn() -> Vec<FieldInfo>,
}

pub(super) const ENTITIES: &[EntityDef] = &[
    EntityDef {
        name: "conversations",
        label: "Channels and other conversations (conversations.list)",
        method: "conversations.list",
        key: "channels",
        default_incremental: "updated",
        fields: conversation_fields,
    },
    EntityDef {
        name: "users",
        label: "Users, including deactivated ones (users.list)",
        method: "users.list",
        key: "members",
        default_incremental: "updated",
        fields: user_fields,
    },
    EntityDef {
        name: "messages",
        label: "Messages of the channels in source.properties.channels (conversations.history)",
        method: "conversations.history",
        key: "messages",
        default_incremental: "posted_at",
        fields: message_fields,
    },
    EntityDef {
        name: "replies",
        label:
            "Thread replies in the channels of source.properties.channels (conversations.replies)",
        method: "conversations.replies",
        key: "messages",
        default_incremental: "posted_at",
        fields: reply_fields,
    },
];

pub(super) fn reply_fields() -> Vec<FieldInfo> {
    let mut f = message_fields();
    f.push(s("parent_user_id"));
    f
}

pub(super) fn conversation_fields() -> Vec<FieldInfo> {
    vec![
        s("id").key(),
        s("name"),
        s("name_normalized"),
        boolean("is_channel"),
        boolean("is_group"),
        boolean("is_im"),
        boolean("is_mpim"),
        boolean("is_private"),
        boolean("is_archived"),
        boolean("is_general"),
        boolean("is_shared"),
        boolean("is_ext_shared"),
        boolean("is_org_shared"),
        s("creator"),
        s("context_team_id"),
        int("num_members"),
        json("topic"),
        json("purpose"),
        ts("created").incremental(),
        ts("updated").incremental(),
    ]
}

pub(super) fn user_fields() -> Vec<FieldInfo> {
    vec![
        s("id").key(),
        s("team_id"),
        s("name"),
        s("real_name"),
        boolean("deleted"),
        s("tz"),
        s("tz_label"),
        int("tz_offset"),
        boolean("is_admin"),
        boolean("is_owner"),
        boolean("is_primary_owner"),
        boolean("is_restricted"),
        boolean("is_ultra_restricted"),
        boolean("is_bot"),
        boolean("is_app_user"),
        boolean("is_email_confirmed"),
        json("profile"),
        ts("updated").incremental(),
    ]
}

pub(super) fn message_fields() -> Vec<FieldInfo> {
    vec![
        s("channel").key(),
        s("ts").key(),
        ts("posted_at").required().incremental(),
        s("type"),
        s("subtype"),
        s("user"),
        s("bot_id"),
        s("team"),
        s("text"),
        s("client_msg_id"),
        s("thread_ts"),
        int("reply_count"),
        int("reply_users_count"),
        s("latest_reply"),
        json("edited"),
        json("reactions"),
        json("files"),
        json("attachments"),
        json("blocks"),
    ]
}

pub(super) fn entity_def(entity: &str) -> Result<&'static EntityDef, SourceError> {
    normalize::find_entity("slack", ENTITIES, |e| e.name, entity)
}

/// A window bound as Slack writes timestamps: seconds and microseconds.
pub(super) fn slack_ts(t: DateTime<Utc>) -> String {
    format!("{}.{:06}", t.timestamp(), t.timestamp_subsec_micros())
}
