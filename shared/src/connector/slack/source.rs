//! The slack connector's reads: requests, paging, windows, records.

use super::*;

/// Where reading stands: the channel (index into `channels`) and Slack's cursor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct SCursor {
    #[serde(default)]
    pub(super) channel: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) cursor: Option<String>,
    #[serde(default)]
    pub(super) pages: u64,
    /// `replies`: thread parents (their `ts`) of the channel still to read, the first one
    /// being read with `reply_cursor`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) parents: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) reply_cursor: Option<String>,
    /// `replies`: the channel's history has been scanned for parents to its end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) history_done: bool,
}

/// The slack connector bound to one flow.
pub struct SlackSource {
    pub(super) base: String,
    pub(super) cfg: SlackConfig,
    pub(super) http: HttpClient,
    pub(super) warnings: std::sync::Mutex<Vec<String>>,
}

impl SlackSource {
    pub fn new(
        props: &Map<String, Value>,
        entity: &str,
        auth: Authenticator,
    ) -> Result<Self, SourceError> {
        let cfg = SlackConfig::parse(props, entity)?;
        let base = cfg.base_url.clone().unwrap_or_else(|| DEFAULT_BASE.into());
        let base = base.trim_end_matches('/').to_string();
        let http = HttpClient::new(cfg.http.clone(), Arc::new(auth), &base)?;
        Ok(SlackSource {
            base,
            cfg,
            http,
            warnings: Default::default(),
        })
    }

    pub(super) fn request(&self, def: &EntityDef, req: &ReadRequest, c: &SCursor) -> HttpRequest {
        let mut r = HttpRequest::get(format!("{}/{}", self.base, def.method));
        let limit = req
            .page_size
            .or(self.cfg.page_size)
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT);
        r.query.push(("limit".into(), limit.to_string()));
        match def.name {
            "conversations" => {
                r.query.push((
                    "types".into(),
                    self.cfg
                        .types
                        .clone()
                        .unwrap_or_else(|| "public_channel,private_channel".into()),
                ));
                r.query.push((
                    "exclude_archived".into(),
                    self.cfg.exclude_archived.to_string(),
                ));
            }
            "messages" => {
                r.query
                    .push(("channel".into(), self.cfg.channels[c.channel].clone()));
                if let Some(w) = &req.window {
                    if let Some(s) = w.start {
                        r.query.push(("oldest".into(), slack_ts(s)));
                    }
                    r.query.push(("latest".into(), slack_ts(w.end)));
                    r.query.push(("inclusive".into(), "true".into()));
                }
            }
            _ => {}
        }
        if let Some(cur) = &c.cursor {
            r.query.push(("cursor".into(), cur.clone()));
        }
        r
    }

    /// The cursor of the next channel of `channels` (`None` after the last).
    pub(super) fn next_channel(&self, c: &SCursor, pages: u64) -> Option<SCursor> {
        (c.channel + 1 < self.cfg.channels.len()).then(|| SCursor {
            channel: c.channel + 1,
            pages,
            ..Default::default()
        })
    }

    /// A channel the token cannot read: with `on_channel_error: skip`, an empty page that
    /// moves on to the next channel (and a warning); `None`: not a channel error, or `fail`.
    pub(super) fn channel_error(
        &self,
        def: &EntityDef,
        url: &str,
        body: &Value,
        c: &SCursor,
        channel: &str,
        bytes: u64,
    ) -> Result<Option<Page>, SourceError> {
        let code = body.get("error").and_then(Value::as_str).unwrap_or("");
        if !matches!(code, "channel_not_found" | "not_in_channel")
            || self.cfg.on_channel_error == OnChannelError::Fail
        {
            return Ok(None);
        }
        let w = format!(
            "slack {} ({url}): channel {channel} skipped ({code}): the token cannot read it, so its {} in this window are not read; invite the app (/invite @your-app) or fix the ID in source.properties.channels, or set on_channel_error: fail to fail the run instead",
            def.method, def.name
        );
        tracing::warn!(channel, code, "{w}");
        self.warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(w);
        Ok(Some(Page {
            records: vec![],
            next: self
                .next_channel(c, c.pages + 1)
                .map(|n| super::cursor_json(&n))
                .transpose()?,
            bytes,
        }))
    }

    pub(super) fn limit(&self, req: &ReadRequest) -> String {
        req.page_size
            .or(self.cfg.page_size)
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT)
            .to_string()
    }

    /// `replies`: per channel, scan `conversations.history` for thread parents that may have
    /// replies in the window (posted up to `replies_lookback_days` before its start, with a
    /// `latest_reply` after it), then read each thread with `conversations.replies`, keeping
    /// the replies (not the parent, which every answer repeats first) posted in the window.
    /// <https://docs.slack.dev/reference/methods/conversations.replies>
    pub(super) async fn read_replies(
        &self,
        def: &EntityDef,
        req: &ReadRequest,
        mut c: SCursor,
    ) -> Result<Page, SourceError> {
        let Some(channel) = self.cfg.channels.get(c.channel).cloned() else {
            return Ok(Page {
                records: vec![],
                next: None,
                bytes: 0,
            });
        };
        let pages = c.pages + 1;
        let send = |r: HttpRequest| async move {
            self.http.send(&r).await?.ok_or_else(|| SourceError::Fatal {
                message: "an ignored status answered a Slack request".into(),
            })
        };
        let Some(parent) = c.parents.first().cloned() else {
            if c.history_done {
                return Ok(Page {
                    records: vec![],
                    next: self
                        .next_channel(&c, pages)
                        .map(|n| super::cursor_json(&n))
                        .transpose()?,
                    bytes: 0,
                });
            }
            // Scan one history page for thread parents.
            let hist = entity_def("messages")?;
            let mut r = HttpRequest::get(format!("{}/conversations.history", self.base));
            r.query = vec![
                ("channel".into(), channel.clone()),
                ("limit".into(), self.limit(req)),
            ];
            if let Some(w) = &req.window {
                if let Some(s) = w.start {
                    let back = chrono::Duration::days(self.cfg.replies_lookback_days as i64);
                    let from = s.checked_sub_signed(back).unwrap_or(s);
                    r.query.push(("oldest".into(), slack_ts(from)));
                }
                r.query.push(("latest".into(), slack_ts(w.end)));
                r.query.push(("inclusive".into(), "true".into()));
            }
            if let Some(cur) = &c.cursor {
                r.query.push(("cursor".into(), cur.clone()));
            }
            let resp = send(r).await?;
            let body = &resp.body;
            if body.get("ok").and_then(Value::as_bool) != Some(true) {
                if let Some(p) =
                    self.channel_error(def, &resp.url, body, &c, &channel, resp.bytes)?
                {
                    return Ok(p);
                }
                return Err(self.api_error(hist, &resp.url, body, &resp.headers, Some(&channel)));
            }
            let msgs = body.get("messages").and_then(Value::as_array).ok_or_else(|| {
                SourceError::Rejected {
                    message: format!("slack conversations.history ({}) answered ok=true without a `messages` array", resp.url),
                }
            })?;
            let start = req.window.and_then(|w| w.start);
            c.parents = msgs
                .iter()
                .filter(|m| m.get("reply_count").and_then(Value::as_u64).unwrap_or(0) > 0)
                .filter(|m| {
                    // A thread whose latest reply is not after the window start has nothing new.
                    let latest = m.get("latest_reply").and_then(normalize::time);
                    start.is_none_or(|s| latest.is_none_or(|l| l > s))
                })
                .filter_map(|m| m.get("ts").and_then(Value::as_str).map(String::from))
                .collect();
            let next_cursor = body
                .pointer("/response_metadata/next_cursor")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from);
            if next_cursor.is_some() && next_cursor == c.cursor {
                return Err(SourceError::Rejected {
                    message: format!("slack conversations.history ({}) handed back the cursor it was given; the API is looping", resp.url),
                });
            }
            c.history_done = next_cursor.is_none();
            c.cursor = next_cursor;
            c.pages = pages;
            let next = if c.parents.is_empty() && c.history_done {
                self.next_channel(&c, pages)
            } else {
                Some(c)
            };
            return Ok(Page {
                records: vec![],
                next: next.map(|n| super::cursor_json(&n)).transpose()?,
                bytes: resp.bytes,
            });
        };
        // Read one page of the first pending thread.
        let mut r = HttpRequest::get(format!("{}/conversations.replies", self.base));
        r.query = vec![
            ("channel".into(), channel.clone()),
            ("ts".into(), parent.clone()),
            ("limit".into(), self.limit(req)),
        ];
        if let Some(w) = &req.window {
            if let Some(s) = w.start {
                r.query.push(("oldest".into(), slack_ts(s)));
            }
            r.query.push(("latest".into(), slack_ts(w.end)));
            r.query.push(("inclusive".into(), "true".into()));
        }
        if let Some(rc) = &c.reply_cursor {
            r.query.push(("cursor".into(), rc.clone()));
        }
        let resp = send(r).await?;
        let body = &resp.body;
        let mut records = vec![];
        let mut reply_next = None;
        if body.get("ok").and_then(Value::as_bool) != Some(true) {
            let code = body.get("error").and_then(Value::as_str).unwrap_or("");
            if code == "thread_not_found" {
                // The parent was deleted since the history scan: nothing to read there.
                tracing::info!(channel = %channel, thread = %parent, "thread gone before its replies were read");
            } else if let Some(p) =
                self.channel_error(def, &resp.url, body, &c, &channel, resp.bytes)?
            {
                return Ok(p);
            } else {
                return Err(self.api_error(def, &resp.url, body, &resp.headers, Some(&channel)));
            }
        } else {
            let items = body.get("messages").and_then(Value::as_array).ok_or_else(|| {
                SourceError::Rejected {
                    message: format!("slack conversations.replies ({}) answered ok=true without a `messages` array", resp.url),
                }
            })?;
            let fields = (def.fields)();
            for item in items {
                if item.get("ts").and_then(Value::as_str) == Some(parent.as_str()) {
                    continue; // the parent, repeated at the head of every thread
                }
                let mut item = item.clone();
                if let Some(o) = item.as_object_mut() {
                    o.insert("channel".into(), Value::String(channel.clone()));
                    let posted = o.get("ts").cloned().unwrap_or(Value::Null);
                    o.insert("posted_at".into(), posted);
                }
                let rec =
                    normalize::shape(&item, &fields).map_err(|why| SourceError::Rejected {
                        message: format!(
                            "slack conversations.replies ({}): a reply in thread {parent}: {why}",
                            resp.url
                        ),
                    })?;
                if let Some(w) = &req.window {
                    match rec.get("posted_at").and_then(normalize::time) {
                        Some(t) if w.contains(t) => {}
                        Some(_) => continue,
                        None => {
                            return Err(SourceError::Rejected {
                                message: format!("slack conversations.replies ({}): a reply in thread {parent} has no ts", resp.url),
                            })
                        }
                    }
                }
                records.push(rec);
            }
            reply_next = body
                .pointer("/response_metadata/next_cursor")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from);
            if reply_next.is_some() && reply_next == c.reply_cursor {
                return Err(SourceError::Rejected {
                    message: format!("slack conversations.replies ({}) handed back the cursor it was given; the API is looping", resp.url),
                });
            }
        }
        c.pages = pages;
        let next = match reply_next {
            Some(rc) => {
                c.reply_cursor = Some(rc);
                Some(c)
            }
            None => {
                c.parents.remove(0);
                c.reply_cursor = None;
                if c.parents.is_empty() && c.history_done {
                    self.next_channel(&c, pages)
                } else {
                    Some(c)
                }
            }
        };
        Ok(Page {
            records,
            next: next.map(|n| super::cursor_json(&n)).transpose()?,
            bytes: resp.bytes,
        })
    }

    /// Map `{"ok": false, "error": …}` to the framework's error kinds.
    pub(super) fn api_error(
        &self,
        def: &EntityDef,
        url: &str,
        body: &Value,
        headers: &reqwest::header::HeaderMap,
        channel: Option<&str>,
    ) -> SourceError {
        let code = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error");
        let what = format!(
            "slack {} ({url}) answered ok=false, error `{code}`",
            def.method
        );
        match code {
            "not_authed" | "invalid_auth" | "account_inactive" | "token_revoked" | "token_expired"
            | "no_permission" | "access_denied" | "team_access_not_granted" | "not_allowed_token_type"
            | "ekm_access_denied" | "org_login_required" => self.http.auth.auth_error(format!(
                "{what}: the token was refused; put a valid bot (xoxb-) or user (xoxp-) token into the profile's secret as {{\"type\": \"bearer\", \"token\": \"…\"}}"
            )),
            "missing_scope" => {
                let needed = body.get("needed").and_then(Value::as_str).unwrap_or("?");
                let provided = body.get("provided").and_then(Value::as_str).unwrap_or("?");
                self.http.auth.auth_error(format!(
                    "{what}: the token lacks the scope `{needed}` (it has: {provided}); add it to the app's OAuth scopes and reinstall the app"
                ))
            }
            "ratelimited" | "rate_limited" => {
                let retry_after = headers
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                SourceError::Throttled {
                    message: format!("{what}: rate limited; the chunk is retried later"),
                    retry_after,
                }
            }
            "channel_not_found" | "not_in_channel" => SourceError::Rejected {
                message: format!(
                    "{what} for channel {}: source.properties.channels must list conversations the token can read — check the ID, and for a bot token invite the app to the channel (/invite @your-app)",
                    channel.unwrap_or("?")
                ),
            },
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => SourceError::Transient {
                message: format!("{what}: a Slack-side failure; the chunk is retried"),
            },
            _ => SourceError::Rejected {
                message: format!("{what}{}", body.get("response_metadata").map(|m| format!(" ({m})")).unwrap_or_default()),
            },
        }
    }
}

#[async_trait]
impl Source for SlackSource {
    /// The entities, after `auth.test` (one cheap authenticated call) proves the token works;
    /// methods are shown on the configured `base_url`.
    /// <https://docs.slack.dev/reference/methods/auth.test>
    async fn list_entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        let def = EntityDef {
            name: "auth",
            label: "auth.test",
            method: "auth.test",
            key: "user_id",
            default_incremental: "",
            fields: Vec::new,
        };
        let resp = self
            .http
            .send(&HttpRequest::get(format!("{}/auth.test", self.base)))
            .await?
            .ok_or_else(|| SourceError::Fatal {
                message: "an ignored status answered a Slack request".into(),
            })?;
        if resp.body.get("ok").and_then(Value::as_bool) != Some(true) {
            return Err(self.api_error(&def, &resp.url, &resp.body, &resp.headers, None));
        }
        Ok(ENTITIES
            .iter()
            .map(|e| EntityInfo {
                name: e.name.into(),
                label: e.label.into(),
                description: Some(format!("GET {}/{}", self.base, e.method)),
            })
            .collect())
    }

    fn take_warnings(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    async fn describe(&self, entity: &str) -> Result<EntityDescription, SourceError> {
        let def = entity_def(entity)?;
        Ok(EntityDescription {
            entity: entity.into(),
            fields: (def.fields)(),
        })
    }

    async fn read_page(
        &self,
        req: &ReadRequest,
        cursor: Option<&Value>,
    ) -> Result<Page, SourceError> {
        let def = entity_def(&req.entity)?;
        if matches!(def.name, "messages" | "replies") && self.cfg.channels.is_empty() {
            return Err(SourceError::config(
                "source.properties.channels",
                format!(
                    "the {} entity needs the channel IDs to read, e.g. channels: [C0123456789]",
                    def.name
                ),
            ));
        }
        let c: SCursor = super::cursor_from("slack", cursor)?.unwrap_or_default();
        if def.name == "replies" {
            return self.read_replies(def, req, c).await;
        }
        let channel = (def.name == "messages")
            .then(|| self.cfg.channels.get(c.channel).cloned())
            .flatten();
        if def.name == "messages" && channel.is_none() {
            return Ok(Page {
                records: vec![],
                next: None,
                bytes: 0,
            });
        }
        let resp = self
            .http
            .send(&self.request(def, req, &c))
            .await?
            .ok_or_else(|| SourceError::Fatal {
                message: "an ignored status answered a Slack request".into(),
            })?;
        let body = &resp.body;
        if body.get("ok").and_then(Value::as_bool) != Some(true) {
            if let Some(ch) = &channel {
                if let Some(p) = self.channel_error(def, &resp.url, body, &c, ch, resp.bytes)? {
                    return Ok(p);
                }
            }
            return Err(self.api_error(def, &resp.url, body, &resp.headers, channel.as_deref()));
        }
        if let Some(w) = body.get("warning") {
            tracing::warn!(method = def.method, warning = %w, "slack answered with a warning");
        }
        let items =
            body.get(def.key)
                .and_then(Value::as_array)
                .ok_or_else(|| SourceError::Rejected {
                    message: format!(
                        "slack {} ({}) answered ok=true without a `{}` array",
                        def.method, resp.url, def.key
                    ),
                })?;
        let fields = (def.fields)();
        let inc_field = req
            .incremental_field
            .clone()
            .unwrap_or_else(|| def.default_incremental.into());
        let mut records = Vec::with_capacity(items.len());
        for item in items {
            let mut item = item.clone();
            if let (Some(ch), Some(o)) = (&channel, item.as_object_mut()) {
                o.insert("channel".into(), Value::String(ch.clone()));
                let posted = o.get("ts").cloned().unwrap_or(Value::Null);
                o.insert("posted_at".into(), posted);
            }
            let id = item
                .get("id")
                .or_else(|| item.get("ts"))
                .cloned()
                .unwrap_or(Value::Null);
            let rec = normalize::shape(&item, &fields).map_err(|why| SourceError::Rejected {
                message: format!(
                    "slack {} ({}): {} {id}: {why}",
                    def.method, resp.url, def.name
                ),
            })?;
            if let Some(w) = &req.window {
                match rec.get(&inc_field).and_then(normalize::time) {
                    Some(t) if w.contains(t) => {}
                    Some(_) => continue,
                    None => {
                        return Err(SourceError::Rejected {
                            message: format!(
                                "slack {}: {} {id} has no datetime in `{inc_field}`, the flow's incremental field; use {}",
                                def.method, def.name, def.default_incremental
                            ),
                        })
                    }
                }
            }
            records.push(rec);
        }
        let next_cursor = body
            .pointer("/response_metadata/next_cursor")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let pages = c.pages + 1;
        let next = match next_cursor {
            Some(nc) => {
                if c.cursor.as_deref() == Some(nc) {
                    return Err(SourceError::Rejected {
                        message: format!("slack {} ({}) handed back the cursor it was given (after {pages} pages); the API is looping", def.method, resp.url),
                    });
                }
                Some(SCursor {
                    channel: c.channel,
                    cursor: Some(nc.into()),
                    pages,
                    ..Default::default()
                })
            }
            None => {
                if body.get("has_more").and_then(Value::as_bool) == Some(true) {
                    return Err(SourceError::Rejected {
                        message: format!("slack {} ({}) says has_more but gives no response_metadata.next_cursor", def.method, resp.url),
                    });
                }
                (def.name == "messages")
                    .then(|| self.next_channel(&c, pages))
                    .flatten()
            }
        };
        Ok(Page {
            records,
            next: next.map(|n| super::cursor_json(&n)).transpose()?,
            bytes: resp.bytes,
        })
    }
}
