//! Triggers in AWS: a scheduled flow gets an EventBridge Scheduler schedule that starts the
//! state machine with `{"flow": NAME, "trigger": "scheduled"}`; an event-triggered flow gets an
//! EventBridge rule with the flow's event pattern targeting the state machine with
//! `{"flow": NAME, "trigger": "event"}`. Deleting a flow removes both; a suspended or draft flow
//! keeps its schedule, disabled.

use crate::error::StoreError;
use crate::flow::Trigger;
use crate::ports::{FlowStatus, StoredFlow};
use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState, Target};
use serde_json::json;

/// Schedule and rule names: `ferry-<flow>`, cut to 64 characters with a hash suffix.
pub fn trigger_name(flow: &str) -> String {
    let full = format!("ferry-{flow}");
    if full.len() <= 64 {
        return full;
    }
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(flow.as_bytes()));
    format!("{}-{}", &full[..55], &h[..8])
}

/// The execution input a trigger sends.
pub fn execution_input(flow: &str, trigger: &str) -> String {
    json!({"flow": flow, "trigger": trigger}).to_string()
}

/// What [`FlowScheduler::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerChange {
    /// A schedule was created or updated (enabled or not).
    Schedule { name: String, enabled: bool },
    /// An event rule was created or updated.
    Rule { name: String, enabled: bool },
    /// On demand: nothing scheduled (any earlier schedule or rule was removed).
    None,
}

pub struct FlowScheduler {
    scheduler: aws_sdk_scheduler::Client,
    events: aws_sdk_eventbridge::Client,
    state_machine_arn: String,
    /// Role EventBridge Scheduler assumes to start the state machine (trusts
    /// `scheduler.amazonaws.com`; stack output `SchedulerRoleArn`).
    schedule_role_arn: Option<String>,
    /// Role EventBridge rules assume to start the state machine (trusts `events.amazonaws.com`;
    /// stack output `EventRuleRoleArn`).
    rule_role_arn: Option<String>,
    /// Schedule group (`default` unless set).
    group: String,
    /// Bus whose events can trigger flows (`default` unless set).
    trigger_bus: String,
}

fn be<E, R>(what: String, e: aws_sdk_scheduler::error::SdkError<E, R>) -> StoreError
where
    E: aws_sdk_scheduler::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    super::sdk_error(what, e)
}

impl FlowScheduler {
    /// A scheduler for the flows of one state machine. Give it the role of each kind of trigger
    /// ([`with_schedule_role`](Self::with_schedule_role), [`with_rule_role`](Self::with_rule_role)):
    /// each role trusts only its own service, so one cannot stand in for the other.
    pub fn new(
        scheduler: aws_sdk_scheduler::Client,
        events: aws_sdk_eventbridge::Client,
        state_machine_arn: impl Into<String>,
    ) -> Self {
        FlowScheduler {
            scheduler,
            events,
            state_machine_arn: state_machine_arn.into(),
            schedule_role_arn: None,
            rule_role_arn: None,
            group: "default".into(),
            trigger_bus: "default".into(),
        }
    }
    pub fn with_schedule_role(mut self, arn: Option<String>) -> Self {
        self.schedule_role_arn = arn.filter(|a| !a.is_empty());
        self
    }
    pub fn with_rule_role(mut self, arn: Option<String>) -> Self {
        self.rule_role_arn = arn.filter(|a| !a.is_empty());
        self
    }
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }
    pub fn with_trigger_bus(mut self, bus: impl Into<String>) -> Self {
        self.trigger_bus = bus.into();
        self
    }

    /// Make the flow's trigger in AWS match its definition and status.
    pub async fn apply(&self, stored: &StoredFlow) -> Result<TriggerChange, StoreError> {
        let flow = &stored.flow;
        let name = trigger_name(&flow.name);
        let enabled = stored.status == FlowStatus::Active;
        match &flow.trigger {
            Trigger::Scheduled(s) => {
                let role = self.schedule_role_arn.as_deref().ok_or_else(|| StoreError::Invalid(format!(
                    "flow '{}' is scheduled: its schedule needs the role EventBridge Scheduler assumes; pass --scheduler-role-arn or set FERRY_SCHEDULER_ROLE_ARN (stack output `SchedulerRoleArn`)",
                    flow.name
                )))?;
                self.delete_rule(&name).await?;
                let target = Target::builder()
                    .arn(&self.state_machine_arn)
                    .role_arn(role)
                    .input(execution_input(&flow.name, "scheduled"))
                    .build()
                    .map_err(|e| StoreError::backend("scheduler target", e))?;
                let window = FlexibleTimeWindow::builder()
                    .mode(FlexibleTimeWindowMode::Off)
                    .build()
                    .map_err(|e| StoreError::backend("scheduler window", e))?;
                let state = if enabled {
                    ScheduleState::Enabled
                } else {
                    ScheduleState::Disabled
                };
                let to_dt = |t: chrono::DateTime<chrono::Utc>| {
                    aws_sdk_scheduler::primitives::DateTime::from_secs(t.timestamp())
                };
                let exists = self.schedule_exists(&name).await?;
                let description = format!("ferry: start flow '{}'", flow.name);
                if exists {
                    self.scheduler
                        .update_schedule()
                        .name(&name)
                        .group_name(&self.group)
                        .description(description)
                        .schedule_expression(&s.expression)
                        .set_schedule_expression_timezone(s.timezone.clone())
                        .set_start_date(s.start_time.map(to_dt))
                        .set_end_date(s.end_time.map(to_dt))
                        .state(state)
                        .flexible_time_window(window)
                        .target(target)
                        .send()
                        .await
                        .map_err(|e| be(format!("scheduler UpdateSchedule {name}"), e))?;
                } else {
                    self.scheduler
                        .create_schedule()
                        .name(&name)
                        .group_name(&self.group)
                        .description(description)
                        .schedule_expression(&s.expression)
                        .set_schedule_expression_timezone(s.timezone.clone())
                        .set_start_date(s.start_time.map(to_dt))
                        .set_end_date(s.end_time.map(to_dt))
                        .state(state)
                        .flexible_time_window(window)
                        .target(target)
                        .send()
                        .await
                        .map_err(|e| be(format!("scheduler CreateSchedule {name}"), e))?;
                }
                Ok(TriggerChange::Schedule { name, enabled })
            }
            Trigger::Event(ev) => {
                let role = self.rule_role_arn.as_deref().ok_or_else(|| StoreError::Invalid(format!(
                    "flow '{}' is event-triggered: its rule's target needs the role EventBridge assumes; pass --event-rule-role-arn or set FERRY_EVENT_RULE_ROLE_ARN (stack output `EventRuleRoleArn`)",
                    flow.name
                )))?;
                self.delete_schedule(&name).await?;
                self.events
                    .put_rule()
                    .name(&name)
                    .event_bus_name(&self.trigger_bus)
                    .description(format!(
                        "ferry: start flow '{}' on matching events",
                        flow.name
                    ))
                    .event_pattern(ev.pattern.to_string())
                    .state(if enabled {
                        aws_sdk_eventbridge::types::RuleState::Enabled
                    } else {
                        aws_sdk_eventbridge::types::RuleState::Disabled
                    })
                    .send()
                    .await
                    .map_err(|e| be(format!("eventbridge PutRule {name}"), e))?;
                let target = aws_sdk_eventbridge::types::Target::builder()
                    .id("state-machine")
                    .arn(&self.state_machine_arn)
                    .role_arn(role)
                    .input(execution_input(&flow.name, "event"))
                    .build()
                    .map_err(|e| StoreError::backend("eventbridge target", e))?;
                let out = self
                    .events
                    .put_targets()
                    .rule(&name)
                    .event_bus_name(&self.trigger_bus)
                    .targets(target)
                    .send()
                    .await
                    .map_err(|e| be(format!("eventbridge PutTargets {name}"), e))?;
                if out.failed_entry_count > 0 {
                    return Err(StoreError::Invalid(format!(
                        "eventbridge PutTargets {name}: {:?}",
                        out.failed_entries.unwrap_or_default()
                    )));
                }
                Ok(TriggerChange::Rule { name, enabled })
            }
            Trigger::OnDemand(_) => {
                self.remove(&flow.name).await?;
                Ok(TriggerChange::None)
            }
        }
    }

    /// Remove the flow's schedule and rule, whichever exist.
    pub async fn remove(&self, flow: &str) -> Result<(), StoreError> {
        let name = trigger_name(flow);
        self.delete_schedule(&name).await?;
        self.delete_rule(&name).await
    }

    async fn schedule_exists(&self, name: &str) -> Result<bool, StoreError> {
        match self
            .scheduler
            .get_schedule()
            .name(name)
            .group_name(&self.group)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(be(format!("scheduler GetSchedule {name}"), e)),
        }
    }

    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError> {
        match self
            .scheduler
            .delete_schedule()
            .name(name)
            .group_name(&self.group)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(be(format!("scheduler DeleteSchedule {name}"), e)),
        }
    }

    async fn delete_rule(&self, name: &str) -> Result<(), StoreError> {
        let not_found = |code: Option<&str>| code == Some("ResourceNotFoundException");
        use aws_sdk_eventbridge::error::ProvideErrorMetadata;
        match self
            .events
            .remove_targets()
            .rule(name)
            .event_bus_name(&self.trigger_bus)
            .ids("state-machine")
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if not_found(e.code()) => return Ok(()),
            Err(e) => return Err(be(format!("eventbridge RemoveTargets {name}"), e)),
        }
        match self
            .events
            .delete_rule()
            .name(name)
            .event_bus_name(&self.trigger_bus)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(e.code()) => Ok(()),
            Err(e) => Err(be(format!("eventbridge DeleteRule {name}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_64_character_limit() {
        assert_eq!(trigger_name("crm"), "ferry-crm");
        let long = "a".repeat(200);
        let n = trigger_name(&long);
        assert_eq!(n.len(), 64);
        assert_ne!(n, trigger_name(&"a".repeat(199)));
    }

    #[test]
    fn input_is_the_run_request() {
        let v: serde_json::Value =
            serde_json::from_str(&execution_input("crm", "scheduled")).unwrap();
        assert_eq!(v, json!({"flow": "crm", "trigger": "scheduled"}));
        let req: crate::steps::start_run::RunRequest = serde_json::from_value(v).unwrap();
        assert_eq!(req.trigger, Some(crate::model::TriggerType::Scheduled));
    }
}
