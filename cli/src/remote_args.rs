//! The remote-mode flags every command with a remote mode takes. They exist in every build so
//! `--help` is the same; without the `remote` feature, `--remote` is refused with how to get it.

/// Where the deployed stack is (flags, or the environment variables `sam deploy`'s outputs fill).
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Remote mode (the deployed stack)")]
pub struct RemoteArgs {
    /// Work against the deployed stack (DynamoDB, Step Functions) instead of the embedded engine.
    #[arg(long, env = "FERRY_REMOTE", global = true)]
    pub remote: bool,
    /// DynamoDB table of the stack (stack output `TableName`).
    #[arg(
        long,
        env = "FERRY_TABLE",
        global = true,
        hide_short_help = true,
        value_name = "NAME"
    )]
    pub table: Option<String>,
    /// Staging bucket of the stack.
    #[arg(
        long,
        env = "FERRY_STAGING_BUCKET",
        global = true,
        hide_short_help = true,
        value_name = "BUCKET"
    )]
    pub staging_bucket: Option<String>,
    /// ARN of the flow-run state machine (stack output `StateMachineArn`).
    #[arg(
        long,
        env = "FERRY_STATE_MACHINE_ARN",
        global = true,
        hide_short_help = true,
        value_name = "ARN"
    )]
    pub state_machine_arn: Option<String>,
    /// Role EventBridge Scheduler assumes to start the state machine (stack output `SchedulerRoleArn`).
    #[arg(
        long,
        env = "FERRY_SCHEDULER_ROLE_ARN",
        global = true,
        hide_short_help = true,
        value_name = "ARN"
    )]
    pub scheduler_role_arn: Option<String>,
    /// Role EventBridge rules assume to start the state machine (stack output `EventRuleRoleArn`).
    #[arg(
        long,
        env = "FERRY_EVENT_RULE_ROLE_ARN",
        global = true,
        hide_short_help = true,
        value_name = "ARN"
    )]
    pub event_rule_role_arn: Option<String>,
    /// Event bus of run reports.
    #[arg(
        long,
        env = "FERRY_EVENT_BUS",
        global = true,
        hide_short_help = true,
        value_name = "NAME"
    )]
    pub event_bus: Option<String>,
    /// Name prefix of connector-profile secrets.
    #[arg(
        long,
        env = "FERRY_SECRET_PREFIX",
        global = true,
        hide_short_help = true,
        value_name = "PREFIX"
    )]
    pub secret_prefix: Option<String>,
}
