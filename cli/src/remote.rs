//! Remote mode: the same commands against a deployed stack. Flows, state and runs live in the
//! DynamoDB table (`--table` / `FERRY_TABLE`); `run` starts an execution of the deployed state
//! machine (`--state-machine-arn` / `FERRY_STATE_MACHINE_ARN`); `flows put` also creates the
//! flow's EventBridge Scheduler schedule or event rule (`--scheduler-role-arn` /
//! `FERRY_SCHEDULER_ROLE_ARN`). Endpoints and credentials come from the AWS SDK's own chain.

use crate::out::{invalid_argument, not_found};
use crate::{FlowsCmd, RunsCmd};
use anyhow::{bail, Context, Result};
use ferry::adapters::dynamodb::DynamoStore;
use ferry::adapters::scheduler::{FlowScheduler, TriggerChange};
use ferry::flow::{Flow, Location, Trigger};
use ferry::model::{PullMode, RunStatus, TriggerType};
use ferry::ports::{FlowStatus, FlowStore, RunStore};
use ferry::steps::start_run::RunRequest;

pub use crate::remote_args::RemoteArgs;

pub struct Remote {
    args: RemoteArgs,
    conf: aws_config::SdkConfig,
    json: bool,
}

impl Remote {
    pub async fn new(args: RemoteArgs, json: bool) -> Remote {
        let conf = ferry::adapters::aws::sdk_config().await;
        Remote { args, conf, json }
    }

    fn store(&self) -> Result<DynamoStore> {
        let table = self.args.table.clone().ok_or_else(|| invalid_argument(
            "remote mode needs the DynamoDB table: pass --table or set FERRY_TABLE (stack output `TableName`)",
        ))?;
        Ok(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&self.conf),
            table,
        ))
    }

    fn state_machine_arn(&self) -> Result<String> {
        self.args.state_machine_arn.clone().ok_or_else(|| invalid_argument(
            "remote mode needs the state machine: pass --state-machine-arn or set FERRY_STATE_MACHINE_ARN (stack output `StateMachineArn`)",
        ))
    }

    /// Schedules and rules of the stack's flows; each kind of trigger gets its own role (the
    /// Scheduler role trusts only EventBridge Scheduler, the rule role only EventBridge), and a
    /// flow whose trigger needs a role that was not given is refused naming the option.
    fn scheduler(&self) -> Result<FlowScheduler> {
        Ok(FlowScheduler::new(
            aws_sdk_scheduler::Client::new(&self.conf),
            aws_sdk_eventbridge::Client::new(&self.conf),
            self.state_machine_arn()?,
        )
        .with_schedule_role(self.args.scheduler_role_arn.clone())
        .with_rule_role(self.args.event_rule_role_arn.clone()))
    }

    fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.conf)
    }

    pub async fn flows(&self, cmd: FlowsCmd) -> Result<i32> {
        let store = self.store()?;
        let now = chrono::Utc::now();
        match cmd {
            FlowsCmd::ImportAppflow { .. } => {
                bail!("import-appflow converts a file locally; run it without --remote")
            }
            FlowsCmd::List | FlowsCmd::Get { .. } => {
                let place = format!(" in table {}", store.table());
                crate::flows_command(&store, &store, cmd, self.json, &place).await
            }
            FlowsCmd::Put { file } => {
                let (flow, _) = crate::validate::read_flow(&file)?;
                check_deployable(&flow)?;
                // Check the trigger's settings before anything is stored.
                let scheduler = match flow.trigger {
                    Trigger::OnDemand(_) => self.scheduler().ok(),
                    _ => Some(self.scheduler()?),
                };
                let mut stored = store.put_flow(&flow, now).await?;
                // Putting a flow (again) re-activates it after a failure-threshold suspension.
                if stored.status == FlowStatus::Suspended {
                    store.set_status(&flow.name, FlowStatus::Active).await?;
                    stored.status = FlowStatus::Active;
                    outln!("flow '{}' re-activated", flow.name);
                }
                outln!(
                    "flow '{}' is at version {}",
                    stored.flow.name,
                    stored.version
                );
                if let Some(s) = scheduler {
                    match s.apply(&stored).await? {
                        TriggerChange::Schedule { name, enabled } => outln!(
                            "schedule {name} ({}) {}",
                            match &flow.trigger {
                                Trigger::Scheduled(t) => t.expression.clone(),
                                _ => String::new(),
                            },
                            if enabled { "enabled" } else { "disabled" }
                        ),
                        TriggerChange::Rule { name, enabled } => outln!(
                            "event rule {name} {}",
                            if enabled { "enabled" } else { "disabled" }
                        ),
                        TriggerChange::None => {}
                    }
                }
                Ok(0)
            }
            FlowsCmd::Delete { name } => {
                if let Ok(s) = self.scheduler() {
                    s.remove(&name).await?;
                }
                if store.delete_flow(&name).await? {
                    store.delete_state(&name).await?;
                    outln!("deleted flow '{name}', its schedule or rule, and its state (its output and run history are kept)");
                    Ok(0)
                } else {
                    Err(not_found(format!(
                        "no flow '{name}' in table {}",
                        store.table()
                    )))
                }
            }
        }
    }

    pub async fn runs(&self, cmd: RunsCmd) -> Result<i32> {
        let store = self.store()?;
        let place = format!(" in table {}", store.table());
        crate::runs_command(&store, &store, cmd, &place, self.json).await
    }

    /// StartExecution; the execution name becomes the run id. A backfill window is checked
    /// (against the registered flow's time zone and incremental field) before anything starts.
    pub async fn run(
        &self,
        flow: String,
        complete: bool,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<i32> {
        let arn = self.state_machine_arn()?;
        let store = self.store()?;
        let Some(stored) = store.get_flow(&flow, None).await? else {
            return Err(not_found(format!(
                "flow '{flow}' is not registered in table {}; register it with `ferry flows put FILE --remote`",
                store.table()
            )));
        };
        let window = crate::backfill::window(from, to, &stored.flow, chrono::Utc::now())?;
        let request = RunRequest {
            flow,
            trigger: Some(TriggerType::OnDemand),
            mode: complete.then_some(PullMode::Complete),
            window,
        };
        let run_id = format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let out = self
            .sfn()
            .start_execution()
            .state_machine_arn(&arn)
            .name(&run_id)
            .input(serde_json::to_string(&request)?)
            .send()
            .await
            .with_context(|| format!("StartExecution on {arn}"))?;
        if self.json {
            crate::out::json(
                &serde_json::json!({ "run_id": run_id, "execution_arn": out.execution_arn }),
            );
        } else {
            outln!("run {run_id} started");
            outln!("execution {}", out.execution_arn);
            outln!("follow it with `ferry runs get {run_id} --remote`");
        }
        Ok(0)
    }

    /// StopExecution, then the run ends as Canceled through the failure path — its uncommitted
    /// output and staging removed, its lease released, the watermark kept — as the stack's
    /// reaper (the rule on the execution's ABORTED status) would do; whichever comes first, the
    /// other finds the run already ended.
    pub async fn stop(&self, run_id: &str) -> Result<i32> {
        let store = self.store()?;
        let rec = store.get_run(run_id).await?;
        let execution_arn = match &rec {
            Some(r) if r.execution_id.starts_with("arn:") => r.execution_id.clone(),
            _ => execution_arn(&self.state_machine_arn()?, run_id)?,
        };
        self.sfn()
            .stop_execution()
            .execution_arn(&execution_arn)
            .error(ferry::steps::finalize::CANCELED)
            .cause("stopped with `ferry stop`")
            .send()
            .await
            .with_context(|| format!("StopExecution {execution_arn}"))?;
        let Some(r) = rec else {
            outln!("execution {execution_arn} stopped (it had not recorded a run yet)");
            return Ok(0);
        };
        if !matches!(r.status, RunStatus::InProgress | RunStatus::CancelStarted) {
            outln!(
                "run {run_id} of flow '{}' had already ended: {}",
                r.flow,
                r.status.as_str()
            );
            return Ok(0);
        }
        match &self.args.staging_bucket {
            Some(staging) => {
                let settings = ferry::adapters::aws::AwsSettings {
                    table: store.table().to_string(),
                    staging_bucket: staging.clone(),
                    event_bus: self
                        .args
                        .event_bus
                        .clone()
                        .unwrap_or_else(|| ferry::adapters::aws::DEFAULT_EVENT_BUS.into()),
                    secret_prefix: self
                        .args
                        .secret_prefix
                        .clone()
                        .unwrap_or_else(|| ferry::adapters::aws::DEFAULT_SECRET_PREFIX.into()),
                    kms_key_id: None,
                    stack_name: None,
                };
                let deps = ferry::adapters::aws::aws_deps(
                    &ferry::adapters::aws::Clients::new(&self.conf),
                    &settings,
                );
                let ended = ferry::steps::finalize::reap(
                    &deps,
                    run_id,
                    ferry::steps::finalize::CANCELED,
                    "stopped with `ferry stop`",
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                let status = ended
                    .map(|r| r.status.as_str().to_string())
                    .unwrap_or_default();
                outln!(
                    "run {run_id} of flow '{}' stopped and marked {status}; its uncommitted output is removed and its lease is released",
                    r.flow
                );
            }
            None => {
                let mut r = r;
                r.status = RunStatus::CancelStarted;
                r.last_updated_at = chrono::Utc::now();
                store.put_run(&r).await?;
                outln!(
                    "run {run_id} of flow '{}' is stopping; the stack's reaper ends it (set FERRY_STAGING_BUCKET, stack output `StagingBucket`, to end it here)",
                    r.flow
                );
            }
        }
        Ok(0)
    }
}

/// `arn:aws:states:R:A:stateMachine:NAME` + run id -> `arn:aws:states:R:A:execution:NAME:RUN`.
pub fn execution_arn(state_machine_arn: &str, run_id: &str) -> Result<String> {
    match state_machine_arn.split_once(":stateMachine:") {
        Some((head, name)) => Ok(format!("{head}:execution:{name}:{run_id}")),
        None => bail!("'{state_machine_arn}' is not a state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME)"),
    }
}

/// A deployed flow writes to S3: a local destination cannot work in Lambda.
fn check_deployable(flow: &Flow) -> Result<()> {
    if let Location::Local { path } = flow.destination.location() {
        bail!(
            "flow '{}': destination is the local directory '{path}', which the deployed functions cannot write to; set `destination.s3: {{ bucket: ..., prefix: ... }}` to deploy it",
            flow.name
        );
    }
    if let Some(Location::Local { path }) = flow.destination.error_location() {
        bail!(
            "flow '{}': destination.error_location '{path}' is a local directory; use s3://bucket/prefix to deploy it",
            flow.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_arn_from_state_machine_arn() {
        assert_eq!(
            execution_arn(
                "arn:aws:states:eu-west-1:123456789012:stateMachine:ferry-flow-run",
                "r1"
            )
            .unwrap(),
            "arn:aws:states:eu-west-1:123456789012:execution:ferry-flow-run:r1"
        );
        assert!(execution_arn("nope", "r1").is_err());
    }
}
