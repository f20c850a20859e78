//! template.yaml as CloudFormation would see it: short-form tags in their long form, SAM's
//! `Globals` merged into each function, and every intrinsic function (`Ref`, `Fn::GetAtt`,
//! `Fn::Sub`, `Fn::If` with the template's `Conditions`, `Fn::Join`, `Fn::Select`,
//! `AWS::NoValue`) resolved against parameter values and the physical names the harness gives
//! each resource. Nothing here is copied from the template by hand: change the template and the
//! stack the harness builds changes with it.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";
pub const PARTITION: &str = "aws";

/// A YAML value with CloudFormation tags -> the equivalent JSON template value
/// (`!Ref X` -> `{"Ref": "X"}`, `!GetAtt A.B` -> `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` ->
/// `{"Fn::Sub": s}`, ...).
pub fn cfn_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).expect("YAML number is a JSON number"),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(cfn_json).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    other => serde_yaml::to_string(&other)
                        .expect("key serializes")
                        .trim()
                        .to_string(),
                };
                out.insert(key, cfn_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = cfn_json(t.value);
            match name {
                "Ref" | "Condition" => json!({ name: inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (res, attr) = s
                            .split_once('.')
                            .unwrap_or_else(|| panic!("!GetAtt {s}: expected Resource.Attribute"));
                        json!({ "Fn::GetAtt": [res, attr] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

/// Parse template text (YAML with CloudFormation tags) into its JSON form.
pub fn parse(text: &str) -> Value {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).expect("template is YAML");
    cfn_json(yaml)
}

/// What a resource is called once created, and its attributes.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    /// What `Ref` returns.
    pub reference: String,
    /// `Fn::GetAtt` attributes (`Arn`, `Name`, ...).
    pub attrs: BTreeMap<String, String>,
}

/// A resolution context: parameters, evaluated conditions and the resources' physical names.
pub struct Resolver {
    pub stack_name: String,
    pub parameters: BTreeMap<String, String>,
    pub conditions: BTreeMap<String, bool>,
    pub physical: BTreeMap<String, Physical>,
}

/// The marker `AWS::NoValue` resolves to; removed from maps and lists after resolution.
const NO_VALUE: &str = "\u{0}AWS::NoValue";

impl Resolver {
    /// Parameters with their defaults (overridden by `overrides`), conditions evaluated.
    pub fn new(tpl: &Value, stack_name: &str, overrides: &BTreeMap<String, String>) -> Resolver {
        let mut parameters = BTreeMap::new();
        if let Some(ps) = tpl["Parameters"].as_object() {
            for (k, p) in ps {
                let v = overrides
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| match &p["Default"] {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    });
                parameters.insert(k.clone(), v);
            }
        }
        let mut r = Resolver {
            stack_name: stack_name.to_string(),
            parameters,
            conditions: BTreeMap::new(),
            physical: BTreeMap::new(),
        };
        if let Some(cs) = tpl["Conditions"].as_object() {
            // Conditions may refer to each other; resolve until stable.
            for _ in 0..cs.len() + 1 {
                for (k, c) in cs {
                    if let Some(b) = r.try_condition(c) {
                        r.conditions.insert(k.clone(), b);
                    }
                }
            }
            for k in cs.keys() {
                assert!(
                    r.conditions.contains_key(k),
                    "condition {k} could not be evaluated"
                );
            }
        }
        r
    }

    fn try_condition(&self, c: &Value) -> Option<bool> {
        let obj = c.as_object()?;
        let (k, v) = obj.iter().next()?;
        let args = v.as_array();
        match k.as_str() {
            "Fn::Equals" => {
                let a = args?;
                Some(self.resolve(&a[0]) == self.resolve(&a[1]))
            }
            "Fn::Not" => Some(!self.try_condition(&args?[0])?),
            "Fn::And" => args?
                .iter()
                .map(|c| self.try_condition(c))
                .try_fold(true, |acc, b| Some(acc && b?)),
            "Fn::Or" => args?
                .iter()
                .map(|c| self.try_condition(c))
                .try_fold(false, |acc, b| Some(acc || b?)),
            "Condition" => self.conditions.get(v.as_str()?).copied(),
            _ => None,
        }
    }

    pub fn condition(&self, name: &str) -> bool {
        *self
            .conditions
            .get(name)
            .unwrap_or_else(|| panic!("unknown condition {name}"))
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::Region" => REGION.into(),
            "AWS::AccountId" => ACCOUNT.into(),
            "AWS::Partition" => PARTITION.into(),
            "AWS::StackName" => self.stack_name.clone(),
            "AWS::StackId" => format!(
                "arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{}/00000000-0000-0000-0000-000000000000",
                self.stack_name
            ),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            "AWS::NoValue" => NO_VALUE.into(),
            _ => return None,
        })
    }

    fn reference(&self, name: &str) -> String {
        if let Some(p) = self.pseudo(name) {
            return p;
        }
        if let Some(p) = self.parameters.get(name) {
            return p.clone();
        }
        match self.physical.get(name) {
            Some(p) => p.reference.clone(),
            None => panic!("Ref {name}: not a parameter and not a resource the harness created"),
        }
    }

    fn attribute(&self, res: &str, attr: &str) -> String {
        let p = self
            .physical
            .get(res)
            .unwrap_or_else(|| panic!("Fn::GetAtt {res}.{attr}: no such resource created"));
        p.attrs.get(attr).cloned().unwrap_or_else(|| {
            panic!("Fn::GetAtt {res}.{attr}: the harness does not know this attribute")
        })
    }

    fn sub(&self, template: &str, vars: &Map<String, Value>) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            if let Some(lit) = after.strip_prefix('!') {
                // `${!Literal}` is the literal `${Literal}`.
                out.push_str("${");
                rest = lit;
                continue;
            }
            let end = after
                .find('}')
                .unwrap_or_else(|| panic!("Fn::Sub {template}: unclosed ${{"));
            let name = &after[..end];
            let value = if let Some(v) = vars.get(name) {
                self.resolve(v)
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| self.resolve(v).to_string())
            } else if let Some((r, a)) = name.split_once('.') {
                if self.physical.contains_key(r) {
                    self.attribute(r, a)
                } else {
                    self.reference(name)
                }
            } else {
                self.reference(name)
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Resolve every intrinsic function in `v`.
    pub fn resolve(&self, v: &Value) -> Value {
        let r = self.resolve_inner(v);
        strip_no_value(r)
    }

    fn resolve_inner(&self, v: &Value) -> Value {
        match v {
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| self.resolve_inner(i)).collect())
            }
            Value::Object(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().expect("one key");
                match k.as_str() {
                    "Ref" => Value::String(self.reference(arg.as_str().expect("Ref takes a name"))),
                    "Fn::GetAtt" => {
                        let (r, a) = match arg {
                            Value::Array(p) => (
                                p[0].as_str().expect("resource").to_string(),
                                p[1].as_str().expect("attribute").to_string(),
                            ),
                            Value::String(s) => {
                                let (r, a) = s.split_once('.').expect("Resource.Attribute");
                                (r.to_string(), a.to_string())
                            }
                            other => panic!("Fn::GetAtt {other}"),
                        };
                        Value::String(self.attribute(&r, &a))
                    }
                    "Fn::Sub" => match arg {
                        Value::String(s) => Value::String(self.sub(s, &Map::new())),
                        Value::Array(p) => {
                            let vars = p
                                .get(1)
                                .and_then(Value::as_object)
                                .cloned()
                                .unwrap_or_default();
                            Value::String(self.sub(p[0].as_str().expect("Fn::Sub template"), &vars))
                        }
                        other => panic!("Fn::Sub {other}"),
                    },
                    "Fn::If" => {
                        let p = arg.as_array().expect("Fn::If takes a list");
                        let c = self.condition(p[0].as_str().expect("condition name"));
                        self.resolve_inner(&p[if c { 1 } else { 2 }])
                    }
                    "Fn::Join" => {
                        let p = arg.as_array().expect("Fn::Join takes a list");
                        let sep = p[0].as_str().expect("separator");
                        let items = self.resolve_inner(&p[1]);
                        let parts: Vec<String> = items
                            .as_array()
                            .expect("Fn::Join list")
                            .iter()
                            .filter(|v| v.as_str() != Some(NO_VALUE))
                            .map(|v| {
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string())
                            })
                            .collect();
                        Value::String(parts.join(sep))
                    }
                    "Fn::Select" => {
                        let p = arg.as_array().expect("Fn::Select takes a list");
                        let i = self.resolve_inner(&p[0]);
                        let i = i
                            .as_u64()
                            .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
                            .expect("index");
                        self.resolve_inner(&p[1])[i as usize].clone()
                    }
                    "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or" | "Condition" => {
                        Value::Bool(self.try_condition(v).expect("condition"))
                    }
                    _ => {
                        let mut out = Map::new();
                        out.insert(k.clone(), self.resolve_inner(arg));
                        Value::Object(out)
                    }
                }
            }
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), self.resolve_inner(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn strip_no_value(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|i| i.as_str() != Some(NO_VALUE))
                .map(strip_no_value)
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| v.as_str() != Some(NO_VALUE))
                .map(|(k, v)| (k, strip_no_value(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Merge SAM `Globals.<Kind>` into a resource's properties the way SAM documents it: scalars and
/// lists in the resource win, maps are merged key by key (the resource's keys win).
pub fn merge_globals(globals: &Value, props: &Value) -> Value {
    match (globals, props) {
        (Value::Object(g), Value::Object(p)) => {
            let mut out = g.clone();
            for (k, v) in p {
                let merged = match out.get(k) {
                    Some(gv) if gv.is_object() && v.is_object() && !is_intrinsic(v) => {
                        merge_globals(gv, v)
                    }
                    _ => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (_, Value::Null) => globals.clone(),
        _ => props.clone(),
    }
}

fn is_intrinsic(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        m.len() == 1
            && m.keys()
                .next()
                .is_some_and(|k| k == "Ref" || k.starts_with("Fn::"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> Resolver {
        let tpl = json!({
            "Parameters": {"Env": {"Type": "String", "Default": "dev"}, "Key": {"Type": "String", "Default": ""}},
            "Conditions": {
                "HasKey": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Key"}, ""]}]},
                "NoKey": {"Fn::Not": [{"Condition": "HasKey"}]}
            }
        });
        let mut r = Resolver::new(&tpl, "st", &BTreeMap::new());
        r.physical.insert(
            "Table".into(),
            Physical {
                reference: "st-Table-1".into(),
                attrs: [("Arn".to_string(), "arn:t".to_string())].into(),
            },
        );
        r
    }

    #[test]
    fn resolves_refs_subs_ifs_and_drops_no_value() {
        let r = resolver();
        assert!(!r.condition("HasKey"));
        assert!(r.condition("NoKey"));
        let v = r.resolve(&json!({
            "a": {"Fn::Sub": "${AWS::StackName}-${Env}-${Table.Arn}/index/*"},
            "b": {"Fn::If": ["HasKey", "kms", {"Ref": "AWS::NoValue"}]},
            "c": [{"Ref": "Table"}, {"Fn::If": ["HasKey", 1, {"Ref": "AWS::NoValue"}]}],
            "d": {"Fn::Sub": ["arn:${B}/*", {"B": {"Ref": "Table"}}]},
            "e": {"Fn::Sub": "${!Literal}"}
        }));
        assert_eq!(
            v,
            json!({"a": "st-dev-arn:t/index/*", "c": ["st-Table-1"], "d": "arn:st-Table-1/*", "e": "${Literal}"})
        );
    }

    #[test]
    fn globals_merge_maps_and_let_the_resource_win() {
        let g = json!({"Timeout": 3, "Environment": {"Variables": {"A": "1", "B": "2"}}});
        let p = json!({"Timeout": 9, "Environment": {"Variables": {"B": "x"}}});
        assert_eq!(
            merge_globals(&g, &p),
            json!({"Timeout": 9, "Environment": {"Variables": {"A": "1", "B": "x"}}})
        );
    }
}
