//! Schedules and event rules for flows, against moto's EventBridge Scheduler and EventBridge.

use chrono::Utc;
use ferry::adapters::dynamodb::{create_table, DynamoStore};
use ferry::adapters::scheduler::{trigger_name, FlowScheduler, TriggerChange};
use ferry::flow::Flow;
use ferry::ports::{FlowStatus, FlowStore};
use ferry_tests::aws::{sdk_config, unique};

const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:ferry-flow-run";
const ROLE: &str = "arn:aws:iam::123456789012:role/ferry-scheduler";
const RULE_ROLE: &str = "arn:aws:iam::123456789012:role/ferry-event-rule";

fn scheduler(
    sched: &aws_sdk_scheduler::Client,
    events: &aws_sdk_eventbridge::Client,
) -> FlowScheduler {
    FlowScheduler::new(sched.clone(), events.clone(), SM)
        .with_schedule_role(Some(ROLE.into()))
        .with_rule_role(Some(RULE_ROLE.into()))
}

fn flow(name: &str, trigger: &str) -> Flow {
    Flow::parse(
        &format!(
            "name: {name}\nsource: {{ connector: sample, entity: accounts, incremental: {{ field: updated_at }} }}\ndestination: {{ s3: {{ bucket: out-bucket, prefix: p }}, format: jsonl }}\ntrigger: {trigger}\n"
        ),
        "t.yaml",
    )
    .unwrap()
}

#[tokio::test]
async fn a_scheduled_flow_gets_a_schedule_that_starts_the_state_machine() {
    let conf = sdk_config().await;
    let sched = aws_sdk_scheduler::Client::new(&conf);
    let events = aws_sdk_eventbridge::Client::new(&conf);
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let table = unique("ferry");
    create_table(&ddb, &table).await.unwrap();
    let store = DynamoStore::new(ddb, table);
    let s = scheduler(&sched, &events);
    let name = unique("hourly");

    let stored = store
        .put_flow(
            &flow(&name, "{ scheduled: { expression: \"rate(1 hour)\" } }"),
            Utc::now(),
        )
        .await
        .unwrap();
    let change = s.apply(&stored).await.unwrap();
    assert_eq!(
        change,
        TriggerChange::Schedule {
            name: trigger_name(&name),
            enabled: true
        }
    );
    let got = sched
        .get_schedule()
        .name(trigger_name(&name))
        .send()
        .await
        .unwrap();
    assert_eq!(got.schedule_expression(), Some("rate(1 hour)"));
    assert_eq!(got.state().map(|s| s.as_str()), Some("ENABLED"));
    let target = got.target().unwrap();
    assert_eq!(target.arn(), SM);
    assert_eq!(target.role_arn(), ROLE);
    let input: serde_json::Value = serde_json::from_str(target.input().unwrap()).unwrap();
    assert_eq!(
        input,
        serde_json::json!({"flow": name, "trigger": "scheduled"})
    );

    // A changed expression updates the same schedule; a suspended flow's schedule is disabled.
    let mut stored = store
        .put_flow(
            &flow(
                &name,
                "{ scheduled: { expression: \"cron(0 6 * * ? *)\", timezone: Europe/Paris } }",
            ),
            Utc::now(),
        )
        .await
        .unwrap();
    stored.status = FlowStatus::Suspended;
    assert_eq!(
        s.apply(&stored).await.unwrap(),
        TriggerChange::Schedule {
            name: trigger_name(&name),
            enabled: false
        }
    );
    let got = sched
        .get_schedule()
        .name(trigger_name(&name))
        .send()
        .await
        .unwrap();
    assert_eq!(got.schedule_expression(), Some("cron(0 6 * * ? *)"));
    assert_eq!(got.schedule_expression_timezone(), Some("Europe/Paris"));
    assert_eq!(got.state().map(|s| s.as_str()), Some("DISABLED"));

    // Deleting the flow removes the schedule.
    s.remove(&name).await.unwrap();
    let gone = sched.get_schedule().name(trigger_name(&name)).send().await;
    assert!(gone
        .unwrap_err()
        .into_service_error()
        .is_resource_not_found_exception());
    // Removing again is fine.
    s.remove(&name).await.unwrap();
}

#[tokio::test]
async fn an_event_flow_gets_a_rule_with_its_pattern_and_switching_to_on_demand_removes_it() {
    let conf = sdk_config().await;
    let sched = aws_sdk_scheduler::Client::new(&conf);
    let events = aws_sdk_eventbridge::Client::new(&conf);
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let table = unique("ferry");
    create_table(&ddb, &table).await.unwrap();
    let store = DynamoStore::new(ddb, table);
    let bus = unique("saas");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let s = scheduler(&sched, &events).with_trigger_bus(&bus);
    let name = unique("on-event");

    let stored = store
        .put_flow(&flow(&name, "{ event: { pattern: { source: [aws.partner/zendesk], detail-type: [TicketCreated] } } }"), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        s.apply(&stored).await.unwrap(),
        TriggerChange::Rule {
            name: trigger_name(&name),
            enabled: true
        }
    );
    let rule = events
        .describe_rule()
        .name(trigger_name(&name))
        .event_bus_name(&bus)
        .send()
        .await
        .unwrap();
    let pattern: serde_json::Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(
        pattern,
        serde_json::json!({"source": ["aws.partner/zendesk"], "detail-type": ["TicketCreated"]})
    );
    let targets = events
        .list_targets_by_rule()
        .rule(trigger_name(&name))
        .event_bus_name(&bus)
        .send()
        .await
        .unwrap();
    let t = &targets.targets()[0];
    assert_eq!(t.arn(), SM);
    // The rule role (trusts events.amazonaws.com), never the Scheduler's role.
    assert_eq!(t.role_arn(), Some(RULE_ROLE));
    let input: serde_json::Value = serde_json::from_str(t.input().unwrap()).unwrap();
    assert_eq!(input, serde_json::json!({"flow": name, "trigger": "event"}));

    let stored = store
        .put_flow(&flow(&name, "{ on_demand: {} }"), Utc::now())
        .await
        .unwrap();
    assert_eq!(s.apply(&stored).await.unwrap(), TriggerChange::None);
    assert!(events
        .describe_rule()
        .name(trigger_name(&name))
        .event_bus_name(&bus)
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn a_trigger_without_its_role_is_refused_naming_the_option() {
    let conf = sdk_config().await;
    let sched = aws_sdk_scheduler::Client::new(&conf);
    let events = aws_sdk_eventbridge::Client::new(&conf);
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let table = unique("ferry");
    create_table(&ddb, &table).await.unwrap();
    let store = DynamoStore::new(ddb, table);
    let name = unique("on-event");
    // Only the Scheduler role: an event flow cannot borrow it.
    let s =
        FlowScheduler::new(sched.clone(), events.clone(), SM).with_schedule_role(Some(ROLE.into()));
    let stored = store
        .put_flow(
            &flow(
                &name,
                "{ event: { pattern: { source: [aws.partner/zendesk] } } }",
            ),
            Utc::now(),
        )
        .await
        .unwrap();
    let err = s.apply(&stored).await.unwrap_err().to_string();
    assert!(
        err.contains("FERRY_EVENT_RULE_ROLE_ARN") && err.contains("EventRuleRoleArn"),
        "{err}"
    );
    assert!(
        events
            .describe_rule()
            .name(trigger_name(&name))
            .send()
            .await
            .is_err(),
        "no rule created"
    );
    // Only the rule role: a scheduled flow cannot borrow it.
    let s = FlowScheduler::new(sched.clone(), events.clone(), SM)
        .with_rule_role(Some(RULE_ROLE.into()));
    let stored = store
        .put_flow(
            &flow(&name, "{ scheduled: { expression: \"rate(1 hour)\" } }"),
            Utc::now(),
        )
        .await
        .unwrap();
    let err = s.apply(&stored).await.unwrap_err().to_string();
    assert!(
        err.contains("FERRY_SCHEDULER_ROLE_ARN") && err.contains("SchedulerRoleArn"),
        "{err}"
    );
}
