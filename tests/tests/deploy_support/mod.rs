//! Helpers shared by the `deploy_*` tests: load template.yaml with its CloudFormation short-form
//! tags turned into their JSON long form (`!Ref X` -> `{"Ref": "X"}`, `!GetAtt A.B` ->
//! `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` -> `{"Fn::Sub": s}`, ...), and the checks the tests run
//! on it. The checks are plain functions over `serde_json::Value` so the tests can also run them
//! on deliberately broken copies and prove they fail.
#![allow(dead_code)]

use regex::Regex;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// template.yaml as CloudFormation JSON.
pub fn template() -> Value {
    parse_template(&read("template.yaml"))
}

/// Template text (YAML with short-form tags) in its JSON long form: the deployed-stack
/// harness's parser, so both read the template the same way.
pub use ferry_tests::stack::template::parse as parse_template;

pub fn resources(tpl: &Value) -> &Map<String, Value> {
    tpl["Resources"].as_object().expect("Resources is a map")
}

/// Logical ids and bodies of the resources of one type.
pub fn resources_of<'a>(tpl: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    resources(tpl)
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// `${Name}` placeholders of a state machine definition (DefinitionSubstitutions keys).
pub fn asl_placeholders(asl: &str) -> BTreeSet<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"\$\{([^}]*)\}").expect("valid regex"));
    re.captures_iter(asl).map(|c| c[1].to_string()).collect()
}

/// Every placeholder of `asl` has a substitution and every substitution is used. Returns the
/// problems, each naming the placeholder and what to fix.
pub fn check_substitutions(asl: &str, substitutions: &Map<String, Value>) -> Vec<String> {
    let used = asl_placeholders(asl);
    let given: BTreeSet<String> = substitutions.keys().cloned().collect();
    let mut problems = vec![];
    for p in used.difference(&given) {
        problems.push(format!(
            "placeholder ${{{p}}} in the definition has no DefinitionSubstitutions entry (misspelled, or add it to template.yaml)"
        ));
    }
    for s in given.difference(&used) {
        problems.push(format!(
            "DefinitionSubstitutions key {s} is not used by the definition (misspelled, or remove it)"
        ));
    }
    problems
}

/// The state machine resource that uses `statemachines/flow-run.asl.json`.
pub fn flow_run_state_machine(tpl: &Value) -> (&str, &Value) {
    let found: Vec<_> = resources_of(tpl, "AWS::Serverless::StateMachine")
        .into_iter()
        .filter(|(_, r)| r["Properties"]["DefinitionUri"] == "statemachines/flow-run.asl.json")
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one AWS::Serverless::StateMachine must use DefinitionUri statemachines/flow-run.asl.json"
    );
    found[0]
}

// ------------------------------------------------------------------------------------ policies

/// An IAM statement found in the template, with where it came from.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Logical id of the resource that carries it.
    pub resource: String,
    pub sid: Option<String>,
    pub body: Value,
}

/// Every IAM policy statement in the template: SAM `Policies` of functions and state machines
/// (inline documents, both branches of `Fn::If`), `AWS::IAM::Role` inline policies,
/// `AWS::IAM::Policy`/`ManagedPolicy` documents and S3 bucket policies. SAM policy templates and
/// managed policy names in `Policies` are returned separately by [`named_policies`].
pub fn statements(tpl: &Value) -> Vec<Statement> {
    let mut out = vec![];
    for (id, r) in resources(tpl) {
        let props = &r["Properties"];
        let ty = r["Type"].as_str().unwrap_or_default();
        let mut docs: Vec<&Value> = vec![];
        match ty {
            "AWS::Serverless::Function" | "AWS::Serverless::StateMachine" => {
                for p in list(&props["Policies"]) {
                    collect_sam_policy_docs(p, &mut docs);
                }
            }
            "AWS::IAM::Role" => {
                for p in list(&props["Policies"]) {
                    docs.push(&p["PolicyDocument"]);
                }
            }
            "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" | "AWS::S3::BucketPolicy" => {
                docs.push(&props["PolicyDocument"]);
            }
            _ => {}
        }
        for d in docs {
            for s in list(&d["Statement"]) {
                out.push(Statement {
                    resource: id.clone(),
                    sid: s["Sid"].as_str().map(str::to_string),
                    body: s.clone(),
                });
            }
        }
    }
    out
}

fn collect_sam_policy_docs<'a>(p: &'a Value, docs: &mut Vec<&'a Value>) {
    if let Some(branches) = p.get("Fn::If").and_then(Value::as_array) {
        for b in branches.iter().skip(1) {
            collect_sam_policy_docs(b, docs);
        }
    } else if p.get("Statement").is_some() {
        docs.push(p);
    }
}

/// Managed policy names/ARNs and SAM policy templates named in SAM `Policies`, and
/// `ManagedPolicyArns` of IAM roles: (resource, name).
pub fn named_policies(tpl: &Value) -> Vec<(String, String)> {
    let mut out = vec![];
    for (id, r) in resources(tpl) {
        let props = &r["Properties"];
        for p in list(&props["Policies"]) {
            match p {
                Value::String(s) => out.push((id.clone(), s.clone())),
                Value::Object(m) if m.len() == 1 && !m.contains_key("Fn::If") => {
                    let name = m.keys().next().expect("one key").clone();
                    if name != "Statement" && name != "PolicyName" {
                        out.push((id.clone(), name));
                    }
                }
                _ => {}
            }
        }
        for p in list(&props["ManagedPolicyArns"]) {
            out.push((id.clone(), p.to_string()));
        }
    }
    out
}

/// A value or a list of values as a list (`Action: x` and `Action: [x]` are the same).
pub fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    }
}

/// A `Resource: "*"` that the template is allowed to have, and why.
pub struct JustifiedWildcard {
    pub resource: &'static str,
    pub sid: &'static str,
    /// The only actions the statement may hold.
    pub actions: &'static [&'static str],
    pub reason: &'static str,
}

/// The reviewed exceptions to "every Allow names its resources".
pub const JUSTIFIED_WILDCARDS: &[JustifiedWildcard] = &[JustifiedWildcard {
    resource: "FlowRunStateMachine",
    sid: "LogDelivery",
    actions: &[
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    ],
    reason: "Step Functions logging to CloudWatch Logs uses the vended-log delivery APIs, which \
             have no resource-level permissions (AWS documents this statement with Resource \"*\")",
}];

/// SAM-attached or named managed policies the template may use, and why.
pub const JUSTIFIED_NAMED_POLICIES: &[(&str, &str)] = &[];

/// The strings a field holds, looking through `Fn::If` branches and `Fn::Sub` templates.
fn strings_of(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings_of).collect(),
        Value::Object(m) => {
            if let Some(Value::Array(b)) = m.get("Fn::If") {
                b.iter().skip(1).flat_map(strings_of).collect()
            } else if let Some(sub) = m.get("Fn::Sub") {
                match sub {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a.first().map(strings_of).unwrap_or_default(),
                    _ => vec![],
                }
            } else {
                // Ref / GetAtt / ImportValue of a specific resource or a validated parameter.
                vec![]
            }
        }
        _ => vec![],
    }
}

/// A resource pattern that matches every resource of a service (or of all services).
pub fn is_unscoped_resource(s: &str) -> bool {
    static VAR: OnceLock<Regex> = OnceLock::new();
    let var = VAR.get_or_init(|| Regex::new(r"\$\{[^}]*\}").expect("valid regex"));
    static TYPE_WIDE: OnceLock<Regex> = OnceLock::new();
    // `table/*`, `function:*`, `secret:*`: every resource of one type.
    let type_wide =
        TYPE_WIDE.get_or_init(|| Regex::new(r"^[A-Za-z0-9_-]+[:/]\*$").expect("valid regex"));
    // A `${...}` names something specific (a resource of this stack or a validated parameter).
    let s = var.replace_all(s, "{VAR}");
    if s.chars().all(|c| matches!(c, '*' | ':' | '/')) {
        return true;
    }
    if let Some(rest) = s.strip_prefix("arn:") {
        // arn:partition:service:region:account:resource
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        if parts.len() == 5 {
            let res = parts[4];
            return res.chars().all(|c| matches!(c, '*' | ':' | '/')) || type_wide.is_match(res);
        }
    }
    false
}

/// Every violation of the least-privilege rules, each naming the resource, Sid and fix.
pub fn policy_violations(tpl: &Value) -> Vec<String> {
    let mut problems = vec![];
    for st in statements(tpl) {
        let where_ = format!(
            "{} statement {}",
            st.resource,
            st.sid.as_deref().unwrap_or("(no Sid)")
        );
        let effect = st.body["Effect"].as_str().unwrap_or_default();
        if effect == "Deny" {
            continue; // a Deny (e.g. the TLS-only bucket policy's s3:*) takes rights away
        }
        if effect != "Allow" {
            problems.push(format!("{where_}: Effect must be Allow or Deny"));
            continue;
        }
        for key in ["NotAction", "NotResource", "NotPrincipal"] {
            if st.body.get(key).is_some() {
                problems.push(format!(
                    "{where_}: {key} in an Allow grants everything else; list what is allowed"
                ));
            }
        }
        if st.body.get("Principal").is_some_and(|p| {
            strings_of(p).iter().any(|s| s == "*") || p.get("AWS").is_some_and(|a| *a == "*")
        }) {
            problems.push(format!("{where_}: Allow to Principal \"*\""));
        }
        let actions = strings_of(&st.body["Action"]);
        if actions.is_empty() {
            problems.push(format!("{where_}: no Action"));
        }
        for a in &actions {
            if a.contains('*') {
                problems.push(format!(
                    "{where_}: wildcard action {a:?}; name the actions the step needs"
                ));
            }
        }
        let unscoped: Vec<String> = strings_of(&st.body["Resource"])
            .into_iter()
            .filter(|r| is_unscoped_resource(r))
            .collect();
        if st.body.get("Resource").is_none() && st.body.get("Principal").is_none() {
            problems.push(format!("{where_}: no Resource"));
        }
        if !unscoped.is_empty() {
            let justified = JUSTIFIED_WILDCARDS
                .iter()
                .find(|j| j.resource == st.resource && st.sid.as_deref() == Some(j.sid));
            match justified {
                None => problems.push(format!(
                    "{where_}: unscoped Resource {unscoped:?}; scope it to this stack's resources, \
                     or add a reviewed entry with its reason to JUSTIFIED_WILDCARDS"
                )),
                Some(j) => {
                    for a in &actions {
                        if !j.actions.contains(&a.as_str()) {
                            problems.push(format!(
                                "{where_}: action {a} is not among the justified actions of this \
                                 Resource \"*\" statement ({}); give it its own scoped statement",
                                j.reason
                            ));
                        }
                    }
                }
            }
        }
    }
    for (res, name) in named_policies(tpl) {
        if !JUSTIFIED_NAMED_POLICIES.iter().any(|(n, _)| *n == name) {
            problems.push(format!(
                "{res}: policy {name} is not reviewed: use a scoped inline statement, or add it \
                 with its reason to JUSTIFIED_NAMED_POLICIES"
            ));
        }
    }
    problems
}
