//! Least privilege in template.yaml: no wildcard actions, no unscoped resources except the
//! reviewed ones in `JUSTIFIED_WILDCARDS`, and each function reaches only its own resources.
//! Every rule is also run on a deliberately broken copy to prove it can fail.

use crate::deploy_support;

use deploy_support::*;
use serde_json::{json, Value};

#[test]
fn template_has_no_policy_violations() {
    let tpl = template();
    let problems = policy_violations(&tpl);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Not vacuous: the walker sees the functions', the state machine's and the roles' statements.
    let st = statements(&tpl);
    for r in [
        "StartRunFunction",
        "FetchPageFunction",
        "TransformBatchFunction",
        "WriteS3Function",
        "FinalizeFunction",
        "FlowRunStateMachine",
        "SchedulerRole",
        "EventRuleRole",
        "StagingBucketPolicy",
    ] {
        assert!(
            st.iter().any(|s| s.resource == r),
            "no statement found for {r}"
        );
    }
    // Both branches of the conditional KMS grant are seen.
    assert!(st.iter().any(|s| s.sid.as_deref() == Some("KmsKey")));
}

/// The template with one statement appended to a function's first inline policy.
fn with_statement(function: &str, statement: Value) -> Value {
    let mut tpl = template();
    let policies = tpl["Resources"][function]["Properties"]["Policies"]
        .as_array_mut()
        .expect("Policies");
    policies[0]["Statement"]
        .as_array_mut()
        .expect("Statement list")
        .push(statement);
    tpl
}

fn assert_flagged(tpl: &Value, needle: &str) {
    let problems = policy_violations(tpl);
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a violation mentioning {needle:?}, got {problems:#?}"
    );
}

#[test]
fn action_star_is_flagged() {
    let tpl = with_statement(
        "FinalizeFunction",
        json!({"Sid": "Oops", "Effect": "Allow", "Action": "*", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}),
    );
    assert_flagged(
        &tpl,
        "FinalizeFunction statement Oops: wildcard action \"*\"",
    );
}

#[test]
fn service_wildcards_are_flagged() {
    for action in ["s3:*", "dynamodb:*", "secretsmanager:Get*"] {
        let tpl = with_statement(
            "FetchPageFunction",
            json!({"Sid": "Wide", "Effect": "Allow", "Action": [action], "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}),
        );
        assert_flagged(&tpl, &format!("wildcard action {action:?}"));
    }
}

#[test]
fn unscoped_resources_are_flagged() {
    for resource in [
        json!("*"),
        json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::*"}),
        json!({"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"}),
        json!({"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*"}),
        json!({"Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, "*"]}),
    ] {
        let tpl = with_statement(
            "WriteS3Function",
            json!({"Sid": "Broad", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": resource}),
        );
        assert_flagged(&tpl, "WriteS3Function statement Broad: unscoped Resource");
    }
}

#[test]
fn scoped_resources_are_not_flagged() {
    for r in [
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretPrefix}*",
        "${StagingBucket.Arn}/staging/*",
        "arn:${AWS::Partition}:s3:::${Bucket}/*",
        "${Table.Arn}/index/*",
    ] {
        assert!(!is_unscoped_resource(r), "{r}");
    }
    for r in [
        "*",
        "arn:aws:s3:::*",
        "arn:aws:s3:::*/*",
        "arn:aws:lambda:us-east-1:123456789012:function:*",
    ] {
        assert!(is_unscoped_resource(r), "{r}");
    }
}

#[test]
fn a_justified_wildcard_cannot_carry_other_actions() {
    let mut tpl = template();
    let policies = tpl["Resources"]["FlowRunStateMachine"]["Properties"]["Policies"]
        .as_array_mut()
        .unwrap();
    let st = policies[0]["Statement"].as_array_mut().unwrap();
    let log = st
        .iter_mut()
        .find(|s| s["Sid"] == "LogDelivery")
        .expect("LogDelivery");
    log["Action"]
        .as_array_mut()
        .unwrap()
        .push(json!("s3:GetObject"));
    assert_flagged(
        &tpl,
        "action s3:GetObject is not among the justified actions",
    );
}

#[test]
fn not_action_and_unreviewed_managed_policies_are_flagged() {
    let tpl = with_statement(
        "StartRunFunction",
        json!({"Sid": "Inverse", "Effect": "Allow", "NotAction": ["iam:*"], "Resource": {"Ref": "KmsKeyArn"}}),
    );
    assert_flagged(&tpl, "NotAction in an Allow");

    let mut tpl = template();
    tpl["Resources"]["StartRunFunction"]["Properties"]["Policies"]
        .as_array_mut()
        .unwrap()
        .push(json!({"DynamoDBCrudPolicy": {"TableName": {"Ref": "Table"}}}));
    assert_flagged(&tpl, "policy DynamoDBCrudPolicy is not reviewed");
    let mut tpl = template();
    tpl["Resources"]["SchedulerRole"]["Properties"]["ManagedPolicyArns"] =
        json!(["arn:aws:iam::aws:policy/AdministratorAccess"]);
    assert_flagged(&tpl, "AdministratorAccess");
}

/// Every resource pattern of the statements of `id` that grant one of `actions`.
fn resources_granted(tpl: &Value, id: &str, service: &str) -> Vec<String> {
    statements(tpl)
        .into_iter()
        .filter(|s| s.resource == id && s.body["Effect"] == "Allow")
        .filter(|s| {
            list(&s.body["Action"])
                .iter()
                .any(|a| a.as_str().is_some_and(|a| a.starts_with(service)))
        })
        .flat_map(|s| {
            list(&s.body["Resource"])
                .into_iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn functions_reach_only_their_stack_resources() {
    let tpl = template();
    let secret = "secret:${SecretPrefix}*";
    for f in [
        "StartRunFunction",
        "FetchPageFunction",
        "TransformBatchFunction",
        "WriteS3Function",
        "FinalizeFunction",
    ] {
        for r in resources_granted(&tpl, f, "s3:") {
            assert!(
                r.contains("StagingBucket") || r.contains("OutputBucket"),
                "{f}: S3 access outside the staging/output buckets: {r}"
            );
        }
        for r in resources_granted(&tpl, f, "dynamodb:") {
            assert!(
                r.contains("Table"),
                "{f}: DynamoDB access outside the table: {r}"
            );
        }
        for r in resources_granted(&tpl, f, "secretsmanager:") {
            assert!(r.contains(secret), "{f}: secrets outside {secret}: {r}");
        }
        for r in resources_granted(&tpl, f, "events:") {
            assert!(
                r.contains("EventBus"),
                "{f}: events outside the run bus: {r}"
            );
        }
    }
    // Only the steps that build a source read credentials; nothing else writes them.
    for f in [
        "TransformBatchFunction",
        "WriteS3Function",
        "FinalizeFunction",
    ] {
        assert!(
            resources_granted(&tpl, f, "secretsmanager:").is_empty(),
            "{f} reads secrets"
        );
    }
    // Only write-s3 and finalize touch the output bucket.
    for f in [
        "StartRunFunction",
        "FetchPageFunction",
        "TransformBatchFunction",
    ] {
        assert!(
            !resources_granted(&tpl, f, "s3:")
                .iter()
                .any(|r| r.contains("OutputBucket")),
            "{f} can reach the output bucket"
        );
    }
}

#[test]
fn trigger_roles_start_only_this_state_machine() {
    let tpl = template();
    for role in ["SchedulerRole", "EventRuleRole"] {
        let st: Vec<_> = statements(&tpl)
            .into_iter()
            .filter(|s| s.resource == role)
            .collect();
        assert_eq!(st.len(), 1, "{role}");
        assert_eq!(
            list(&st[0].body["Action"]),
            vec![&json!("states:StartExecution")],
            "{role}"
        );
        assert_eq!(
            st[0].body["Resource"],
            json!({"Ref": "FlowRunStateMachine"}),
            "{role}"
        );
        let trust =
            &tpl["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(
            trust["Condition"]["StringEquals"]["aws:SourceAccount"],
            json!({"Ref": "AWS::AccountId"}),
            "{role}: confused-deputy guard"
        );
    }
    assert_eq!(
        tpl["Resources"]["SchedulerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
            ["Principal"]["Service"],
        "scheduler.amazonaws.com"
    );
}

/// Every grant of every function role, resolved with the stack's default parameters: (function,
/// Sid, actions, resources, conditions). Named placeholders stand for this stack's resources.
fn function_grants(tpl: &Value) -> Vec<String> {
    function_grants_with(tpl, &Default::default())
}

/// [`function_grants`] with some parameters set.
fn function_grants_with(
    tpl: &Value,
    parameters: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    use ferry_tests::stack::template::{merge_globals, Physical, Resolver};
    let mut r = Resolver::new(tpl, "STACK", parameters);
    for (id, res) in tpl["Resources"].as_object().unwrap() {
        let arn = match res["Type"].as_str().unwrap() {
            "AWS::DynamoDB::Table" => "arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE".to_string(),
            "AWS::S3::Bucket" => format!("arn:aws:s3:::{}", id.to_uppercase()),
            "AWS::Events::EventBus" => "arn:aws:events:REGION:ACCOUNT:event-bus/BUS".to_string(),
            _ => format!("ARN-OF-{id}"),
        };
        r.physical.insert(
            id.clone(),
            Physical {
                reference: id.to_uppercase(),
                attrs: [("Arn".to_string(), arn)].into(),
            },
        );
    }
    let globals = &tpl["Globals"]["Function"];
    let list = |v: &Value| -> String {
        match v {
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            Value::String(s) => s.clone(),
            _ => String::new(),
        }
    };
    let mut out = vec![];
    for (id, res) in tpl["Resources"].as_object().unwrap() {
        if res["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let props = r.resolve(&merge_globals(globals, &res["Properties"]));
        for p in props["Policies"].as_array().into_iter().flatten() {
            for st in p["Statement"].as_array().into_iter().flatten() {
                let cond = st
                    .get("Condition")
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into());
                out.push(
                    format!(
                        "{id} | {} | {} | {} | {}",
                        st["Sid"].as_str().unwrap_or("?"),
                        list(&st["Action"]),
                        list(&st["Resource"]),
                        cond
                    )
                    .replace("us-east-1", "REGION")
                    .replace("123456789012", "ACCOUNT"),
                );
            }
        }
    }
    out
}

/// The reviewed grants: each function's actions and resources, and why it needs them
/// (tests/tests/deploy_support/grants.txt). The deployed-stack test stack_least_privilege.rs
/// proves each one is used by the code.
const REVIEWED_GRANTS: &str = include_str!("deploy_support/grants.txt");

fn review(got: &[String]) -> Result<(), String> {
    let mut reviewed = vec![];
    for l in REVIEWED_GRANTS
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (grant, why) = l
            .rsplit_once(" || ")
            .ok_or_else(|| format!("grants.txt: `{l}` has no ` || why`"))?;
        if why.trim().is_empty() {
            return Err(format!("grants.txt: `{grant}` says nothing of why"));
        }
        reviewed.push(grant.trim().to_string());
    }
    let new: Vec<&String> = got.iter().filter(|g| !reviewed.contains(g)).collect();
    let gone: Vec<&String> = reviewed.iter().filter(|g| !got.contains(g)).collect();
    if new.is_empty() && gone.is_empty() {
        return Ok(());
    }
    Err(format!(
        "template grants changed.\nnew or widened (review, then add to tests/tests/deploy_support/grants.txt with why):\n{}\nno longer granted (remove from grants.txt):\n{}",
        new.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        gone.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    ))
}

/// Each function's grants are the reviewed ones, no more.
#[test]
fn every_function_grant_is_reviewed() {
    if let Err(e) = review(&function_grants(&deploy_support::template())) {
        panic!("{e}");
    }
}

/// Widening a grant (dropping the condition that limits fetch-page's UpdateItem to the lease,
/// adding an action) is caught.
#[test]
fn a_widened_grant_fails_the_review() {
    let mut tpl = deploy_support::template();
    let statements = tpl["Resources"]["FetchPageFunction"]["Properties"]["Policies"][0]
        ["Statement"]
        .as_array_mut()
        .unwrap();
    let renew = statements
        .iter_mut()
        .find(|s| s["Sid"] == "RenewLease")
        .unwrap();
    renew.as_object_mut().unwrap().remove("Condition");
    let e = review(&function_grants(&tpl)).unwrap_err();
    assert!(
        e.contains("FetchPageFunction | RenewLease | dynamodb:UpdateItem"),
        "{e}"
    );
    let mut tpl = deploy_support::template();
    let statements = tpl["Resources"]["WriteS3Function"]["Properties"]["Policies"][0]["Statement"]
        .as_array_mut()
        .unwrap();
    let stage = statements
        .iter_mut()
        .find(|s| s["Sid"] == "StageCarry")
        .unwrap();
    stage["Action"]
        .as_array_mut()
        .unwrap()
        .push(json!("s3:DeleteObject"));
    let e = review(&function_grants(&tpl)).unwrap_err();
    assert!(
        e.contains("WriteS3Function | StageCarry | s3:PutObject s3:DeleteObject"),
        "{e}"
    );
}

/// With `CatalogDatabase` set, finalize (and only finalize) may use the Glue actions the
/// catalog update needs, on that database and its tables only; unset, nothing in Glue.
#[test]
fn glue_grants_only_the_catalog_database() {
    let tpl = deploy_support::template();
    let none: Vec<String> = function_grants(&tpl)
        .into_iter()
        .filter(|g| g.contains("glue:"))
        .collect();
    assert!(none.is_empty(), "{none:?}");
    let params = [("CatalogDatabase".to_string(), "lake".to_string())].into();
    let glue: Vec<String> = function_grants_with(&tpl, &params)
        .into_iter()
        .filter(|g| g.contains("glue:"))
        .collect();
    assert_eq!(
        glue,
        ["FinalizeFunction | CatalogTables | glue:GetDatabase glue:CreateDatabase glue:GetTable glue:CreateTable glue:UpdateTable glue:BatchCreatePartition | arn:aws:glue:REGION:ACCOUNT:catalog arn:aws:glue:REGION:ACCOUNT:database/lake arn:aws:glue:REGION:ACCOUNT:table/lake/* | -"],
    );
    // No delete, no other database's tables.
    assert!(!glue[0].contains("Delete") && !glue[0].contains("database/*"));
}
