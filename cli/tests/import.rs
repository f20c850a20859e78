//! `ferry flows import-appflow` on sixteen AppFlow definitions (CreateFlow / DescribeFlow JSON,
//! CloudFormation JSON and YAML with short-form tags), written from AppFlow's documented API and
//! CloudFormation shapes. Each one: the exit code, the problems (only real losses), and the
//! imported flow task by task; every imported flow validates as a ferry flow.

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/appflow")
        .join(name)
        .display()
        .to_string()
}

fn ferry(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(dir)
        .env("FERRY_HOME", dir.join(".ferry"))
        .env_remove("FERRY_LOG")
        .env_remove("FERRY_REMOTE")
        .output()
        .unwrap()
}

/// Import with `--json`: (exit code, flow, problems, notes).
fn import(name: &str, sets: &[&str]) -> (i32, Value, Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(name);
    let mut args = vec!["flows", "import-appflow", f.as_str(), "--json"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = ferry(dir.path(), &args);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: {e}\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let strs = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        !dir.path().join(".ferry").exists(),
        "import writes no state"
    );
    (
        o.status.code().unwrap(),
        v["flow"].clone(),
        strs("problems"),
        strs("notes"),
    )
}

/// The imported flow is a valid ferry flow.
fn validates(name: &str, flow: &Value) {
    ferry::flow::Flow::from_value(flow.clone(), name)
        .unwrap_or_else(|e| panic!("{name} does not validate: {e}"));
}

fn clean(name: &str, sets: &[&str]) -> Value {
    let (code, flow, problems, _) = import(name, sets);
    assert_eq!(problems, Vec::<String>::new(), "{name}");
    assert_eq!(code, 0, "{name}");
    validates(name, &flow);
    flow
}

#[test]
fn salesforce_scheduled_incremental() {
    let f = clean("api-salesforce-scheduled-incremental.json", &[]);
    assert_eq!(
        f["source"],
        json!({ "connector": "salesforce", "profile": "sfdc-prod", "entity": "Account",
                "properties": { "include_deleted": true },
                "incremental": { "field": "LastModifiedDate", "first_execution_from": "2025-12-01T00:00:00Z" } })
    );
    assert_eq!(
        f["trigger"],
        json!({ "scheduled": { "expression": "rate(1 hour)", "mode": "incremental",
                "start_time": "2026-01-01T00:00:00Z", "timezone": "America/New_York",
                "deactivate_after_failures": 5 } })
    );
    let d = &f["destination"];
    assert_eq!(d["s3"]["bucket"], "acme-lake");
    assert_eq!(d["s3"]["prefix"], "raw/salesforce");
    assert!(d["s3"]["kms_key_id"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:kms:"));
    assert_eq!(d["format"], "parquet");
    assert_eq!(d["file_size_mb"], 256);
    assert_eq!(d["layout"], json!({ "prefix_type": "path", "date": "day" }));
    // No preserveSourceDataTyping: AppFlow writes strings.
    assert_eq!(d["preserve_source_types"], false);
    // The maps choose the output (the projection only said what is pulled); same types.
    assert_eq!(
        f["tasks"],
        json!([
            { "map": { "from": "Id" } },
            { "map": { "from": "Name", "to": "account_name" } },
            { "map": { "from": "Industry" } },
            { "map": { "from": "AnnualRevenue" } },
            { "map": { "from": "LastModifiedDate" } },
            { "map": { "from": "IsDeleted" } }
        ])
    );
    assert_eq!(f["tags"], json!({ "team": "revops", "env": "prod" }));
}

#[test]
fn cloudformation_yaml_with_short_form_tags() {
    let name = "cfn-salesforce-opportunity.yaml";
    // What a Ref cannot tell is asked for, never replaced by ''.
    let (code, flow, problems, _) = import(name, &[]);
    assert_eq!(code, 2);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("bucketName") && p.contains("--set LakeBucket=")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("--set LakeKey.Arn=")),
        "{problems:?}"
    );
    assert!(flow["destination"]["s3"]["bucket"]
        .as_str()
        .unwrap()
        .contains("unresolved"));

    let (code, f, problems, notes) = import(
        name,
        &[
            "LakeBucket=acme-lake",
            "LakeKey.Arn=arn:aws:kms:eu-west-1:123456789012:key/k1",
        ],
    );
    assert_eq!((code, problems), (0, vec![]));
    validates(name, &f);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("parameter Env") && n.contains("dev")),
        "{notes:?}"
    );
    assert_eq!(f["name"], "dev-sfdc-opportunity");
    assert_eq!(f["source"]["profile"], "dev-salesforce");
    assert_eq!(f["source"]["properties"], json!({ "api": "bulk" }));
    assert_eq!(
        f["destination"]["s3"],
        json!({ "bucket": "acme-lake", "prefix": "salesforce/dev", "kms_key_id": "arn:aws:kms:eu-west-1:123456789012:key/k1" })
    );
    assert_eq!(f["destination"]["format"], "csv");
    assert_eq!(f["trigger"], json!({ "on_demand": {} }));
    assert_eq!(
        f["tasks"],
        json!([
            { "filter": { "field": "Amount", "op": "greater", "value": 10000 } },
            { "mask": { "field": "Description", "last": 20, "char": "*" } },
            { "map_all": { "exclude": ["Fiscal", "ForecastCategory"] } }
        ])
    );
}

#[test]
fn zendesk_scheduled_flow_stays_incremental() {
    let name = "api-zendesk-tickets-scheduled.json";
    let (code, _, problems, _) = import(name, &[]);
    assert_eq!(code, 2);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("--set properties.subdomain=")),
        "{problems:?}"
    );
    let (_, f, _, notes) = import(name, &["properties.subdomain=acme"]);
    let f2 = clean(name, &["properties.subdomain=acme"]);
    assert_eq!(f, f2);
    assert!(notes.iter().any(|n| n.contains("updated_at")), "{notes:?}");
    assert_eq!(
        f["source"],
        json!({ "connector": "zendesk", "profile": "zendesk-acme", "entity": "tickets",
                "properties": { "subdomain": "acme" }, "incremental": { "field": "updated_at" } })
    );
    assert_eq!(
        f["trigger"],
        json!({ "scheduled": { "expression": "rate(15 minutes)", "mode": "incremental" } })
    );
    assert_eq!(f["destination"]["single_file"], true);
    assert_eq!(f["destination"]["format"], "csv");
    assert_eq!(f["tasks"], json!([{ "map_all": { "exclude": [] } }]));
}

#[test]
fn zendesk_users_cloudformation_json() {
    let f = clean("cfn-zendesk-users.json", &["properties.subdomain=acme"]);
    assert_eq!(f["trigger"], json!({ "on_demand": {} }));
    assert!(f["source"].get("incremental").is_none());
    let d = &f["destination"];
    assert_eq!(d["format"], "jsonl");
    assert_eq!(d["layout"], json!({ "prefix_type": "path", "date": "day" }));
    // TargetFileSize 0 is "not set", not an invalid file_size_mb: 0.
    assert!(d.get("file_size_mb").is_none(), "{d}");
    assert_eq!(
        f["tasks"],
        json!([
            { "filter": { "field": "role", "op": "in", "values": ["admin", "agent"] } },
            { "truncate": { "field": "notes", "length": 200 } },
            { "map": { "from": "id" } },
            { "map": { "from": "email" } },
            { "map": { "from": "notes" } }
        ])
    );
}

#[test]
fn servicenow_incremental_without_a_field_uses_sys_updated_on() {
    let f = clean(
        "api-servicenow-incident-incremental.json",
        &["properties.instance_url=https://acme.service-now.com"],
    );
    assert_eq!(
        f["source"]["incremental"],
        json!({ "field": "sys_updated_on", "offset": "300s" })
    );
    assert_eq!(
        f["source"]["properties"],
        json!({ "instance_url": "https://acme.service-now.com" })
    );
    assert_eq!(f["trigger"]["scheduled"]["mode"], "incremental");
    let d = &f["destination"];
    assert_eq!(d["preserve_source_types"], true);
    assert_eq!(
        d["layout"],
        json!({ "prefix_type": "path", "date": "hour", "hierarchy": ["schema_version", "execution_id"] })
    );
    assert_eq!(d["error_location"], "s3://acme-errors/servicenow");
    assert_eq!(
        f["tasks"],
        json!([
            { "validate": { "field": "number", "check": "non_null", "action": "drop_record" } },
            { "map": { "from": "number" } },
            { "map": { "from": "short_description", "to": "summary" } },
            { "map": { "from": "priority", "type": "integer" } },
            { "map": { "from": "sys_updated_on" } }
        ])
    );
}

#[test]
fn servicenow_complete_daily_cron_yaml() {
    let f = clean(
        "cfn-servicenow-problem.yaml",
        &["properties.instance_url=https://acme.service-now.com"],
    );
    assert_eq!(f["description"], "Problems for itops, complete every day");
    assert_eq!(
        f["trigger"],
        json!({ "scheduled": { "expression": "cron(0 6 * * ? *)", "mode": "complete", "timezone": "Europe/Paris" } })
    );
    assert!(f["source"].get("incremental").is_none());
    assert_eq!(f["destination"]["s3"]["prefix"], "raw/itops");
    assert_eq!(f["destination"]["preserve_source_types"], true);
    assert_eq!(
        f["tasks"],
        json!([
            { "mask": { "field": "caller_id", "char": "#" } },
            { "map_all": { "exclude": [] } }
        ])
    );
    assert_eq!(f["tags"], json!({ "team": "itops" }));
}

#[test]
fn slack_channel_messages() {
    let f = clean("api-slack-messages.json", &[]);
    assert_eq!(
        f["source"],
        json!({ "connector": "slack", "profile": "slack-acme", "entity": "messages",
                "properties": { "channels": ["C0123456789"] },
                "incremental": { "field": "posted_at", "first_execution_from": "2025-10-01T00:00:00Z" } })
    );
    assert_eq!(f["trigger"]["scheduled"]["expression"], "rate(1 day)");
    assert_eq!(
        f["tasks"],
        json!([
            { "filter": { "field": "text", "op": "contains", "value": "incident" } },
            { "project": ["text", "user", "ts"] }
        ])
    );
}

#[test]
fn slack_users_with_a_pseudo_parameter() {
    let name = "cfn-slack-users.yaml";
    let (code, _, problems, _) = import(name, &[]);
    assert_eq!(code, 2);
    assert!(
        problems.iter().any(|p| p.contains("--set AWS::AccountId=")),
        "{problems:?}"
    );
    let f = clean(name, &["AWS::AccountId=123456789012"]);
    assert_eq!(
        f["destination"]["s3"]["bucket"],
        "123456789012-slack-export"
    );
    assert_eq!(
        f["destination"]["layout"],
        json!({ "prefix_type": "filename", "date": "minute" })
    );
    assert_eq!(f["source"]["entity"], "users");
    assert_eq!(f["tasks"], json!([{ "map_all": { "exclude": [] } }]));
}

#[test]
fn salesforce_event_flow_is_a_reported_loss() {
    let (code, f, problems, _) = import("api-salesforce-event.json", &[]);
    assert_eq!(code, 2);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("AppFlow triggerConfig.triggerType: Event"),
        "{problems:?}"
    );
    validates("event", &f);
    assert_eq!(f["trigger"], json!({ "on_demand": {} }));
    // false settings are not problems and add nothing.
    assert!(f["source"].get("properties").is_none(), "{f}");
    assert_eq!(f["tasks"], json!([{ "map_all": { "exclude": [] } }]));
}

#[test]
fn glue_catalog_settings_become_destination_catalog() {
    let (code, f, problems, notes) = import("api-salesforce-glue.json", &[]);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(code, 0);
    validates("glue", &f);
    assert_eq!(
        f["destination"]["catalog"],
        json!({ "database": "salesforce_raw", "table_prefix": "sfdc_" })
    );
    let flow = ferry::flow::Flow::from_value(f.clone(), "glue").unwrap();
    assert_eq!(
        flow.destination.catalog.unwrap().table_name(&flow.name),
        "sfdc_sfdc_contact_catalog"
    );
    assert!(
        notes.iter().any(|n| n.contains("roleArn is not used")),
        "{notes:?}"
    );
    assert_eq!(f["source"]["properties"], json!({ "api": "rest" }));
    assert_eq!(
        f["trigger"],
        json!({ "scheduled": { "expression": "rate(6 hours)", "mode": "complete" } })
    );
    assert_eq!(
        f["destination"]["layout"]["hierarchy"],
        json!(["execution_id", "schema_version"])
    );
}

#[test]
fn filter_validate_arithmetic_merge() {
    let f = clean("api-salesforce-merge-arithmetic.json", &[]);
    assert_eq!(
        f["tasks"],
        json!([
            { "filter": { "field": "CreatedDate", "op": "between",
                          "min": "2025-01-01T00:00:00Z", "max": "2025-12-31T23:59:59Z" } },
            { "validate": { "field": "Quantity", "check": "non_negative", "action": "terminate_run" } },
            { "arithmetic": { "to": "LineTotal", "left": "UnitPrice", "op": "multiply", "right": "Quantity" } },
            { "merge": { "to": "Label", "format": "{ProductCode} - {Name}" } },
            { "map": { "from": "Id" } },
            { "map": { "from": "LineTotal" } },
            { "map": { "from": "Label" } }
        ])
    );
}

#[test]
fn hubspot_through_a_custom_connector() {
    let f = clean("api-hubspot-contacts.json", &["connector=hubspot"]);
    assert_eq!(f["source"]["connector"], "hubspot");
    assert_eq!(f["source"]["entity"], "contacts");
    assert_eq!(
        f["source"]["incremental"],
        json!({ "field": "lastmodifieddate" })
    );
    assert_eq!(f["destination"]["preserve_source_types"], false);
    assert_eq!(
        f["tasks"],
        json!([
            { "mask": { "field": "email", "first": 3 } },
            { "project": ["email", "firstname", "lastname"] }
        ])
    );
}

#[test]
fn salesforce_partition_cron_time_zone() {
    let f = clean("cfn-salesforce-partition.json", &[]);
    assert_eq!(
        f["trigger"],
        json!({ "scheduled": { "expression": "cron(0 */2 ? * MON-FRI *)", "mode": "incremental",
                "start_time": "2026-01-01T00:00:00Z", "end_time": "2027-01-01T00:00:00Z",
                "timezone": "CET", "deactivate_after_failures": 3 } })
    );
    assert_eq!(
        f["source"]["incremental"],
        json!({ "field": "SystemModstamp" })
    );
    assert!(f["source"].get("properties").is_none());
    let d = &f["destination"];
    assert_eq!(d["file_size_mb"], 64);
    assert_eq!(d["layout"]["partition_by"], json!(["Country"]));
    assert_eq!(
        f["tasks"],
        json!([
            { "filter": { "field": "Status", "op": "not_equal", "value": "Disqualified" } },
            { "map_all": { "exclude": [] } }
        ])
    );
    assert_eq!(f["tags"], json!({ "owner": "marketing" }));
}

#[test]
fn describe_flow_output_imports_without_noise() {
    let f = clean(
        "api-describe-zendesk-organizations.json",
        &["properties.subdomain=acme"],
    );
    assert_eq!(
        f["source"]["incremental"],
        json!({ "field": "updated_at", "first_execution_from": "2025-01-01T00:00:00Z" })
    );
    assert_eq!(
        f["destination"]["layout"],
        json!({ "prefix_type": "path_and_filename", "date": "month" })
    );
    assert_eq!(
        f["tasks"],
        json!([{ "project": ["id", "name", "updated_at"] }])
    );
    assert!(f.get("tags").is_none());
}

#[test]
fn mappings_select_and_region() {
    let name = "cfn-servicenow-mappings.yaml";
    let (code, _, problems, _) = import(
        name,
        &["properties.instance_url=https://acme.service-now.com"],
    );
    assert_eq!(code, 2);
    assert!(
        problems.iter().any(|p| p.contains("--set AWS::Region=")),
        "{problems:?}"
    );
    let f = clean(
        name,
        &[
            "AWS::Region=eu-west-1",
            "properties.instance_url=https://acme.service-now.com",
        ],
    );
    assert_eq!(f["name"], "servicenow-change-prod");
    assert_eq!(
        f["destination"]["s3"],
        json!({ "bucket": "acme-lake-prod", "prefix": "raw/eu-west-1/change" })
    );
    assert_eq!(
        f["source"]["incremental"],
        json!({ "field": "sys_updated_on" })
    );
    assert_eq!(
        f["tasks"],
        json!([{ "project": ["number", "state", "sys_updated_on"] }])
    );
}

#[test]
fn not_equal_values_numeric_validation_date_cast() {
    let f = clean("api-salesforce-validate-numeric.json", &[]);
    assert_eq!(f["destination"]["preserve_source_types"], false);
    assert_eq!(
        f["tasks"],
        json!([
            { "filter": { "all": [
                { "field": "Status", "op": "not_equal", "value": "Draft" },
                { "field": "Status", "op": "not_equal", "value": "Cancelled" } ] } },
            { "filter": { "field": "TotalAmount", "op": "greater_or_equal", "value": 0.5 } },
            { "validate": { "field": "OrderNumber", "check": "numeric", "action": "drop_record" } },
            { "map": { "from": "EffectiveDate", "to": "effective_on", "type": "date" } },
            { "map": { "from": "OrderNumber" } }
        ])
    );
}

#[test]
fn problems_write_nothing_unless_partial() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture("api-salesforce-event.json");
    let o = ferry(
        dir.path(),
        &["flows", "import-appflow", &f, "-o", "flow.yaml"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("triggerConfig.triggerType") && err.contains("nothing written"),
        "{err}"
    );
    assert!(!dir.path().join("flow.yaml").exists());

    let o = ferry(
        dir.path(),
        &[
            "flows",
            "import-appflow",
            &f,
            "-o",
            "flow.yaml",
            "--partial",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let written = std::fs::read_to_string(dir.path().join("flow.yaml")).unwrap();
    assert!(
        written.contains("# TODO AppFlow triggerConfig.triggerType"),
        "{written}"
    );
    // The written file is a flow ferry validates.
    let o = ferry(dir.path(), &["validate", "flow.yaml", "--offline"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let o = ferry(
        dir.path(),
        &["flows", "import-appflow", &f, "--set", "novalue"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--set 'novalue' is not KEY=VALUE"));
}
