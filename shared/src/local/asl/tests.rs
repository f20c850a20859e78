//! End-to-end tests: definitions parsed and executed with fake task invokers.
//! Examples are taken from the ASL specification and the AWS Step Functions developer guide.

use super::*;
use serde_json::{json, Value};
use std::sync::Mutex;
use tokio::time::Instant;

type Handler = dyn Fn(&str, &Value, usize) -> Result<Value, TaskFailure> + Send + Sync;

/// Records every call and answers with `handler(resource, input, call_index)`.
struct FakeInvoker {
    handler: Box<Handler>,
    calls: Mutex<Vec<(String, Value)>>,
}

impl FakeInvoker {
    fn new(
        handler: impl Fn(&str, &Value, usize) -> Result<Value, TaskFailure> + Send + Sync + 'static,
    ) -> Self {
        FakeInvoker {
            handler: Box::new(handler),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Always returns `value`.
    fn returning(value: Value) -> Self {
        FakeInvoker::new(move |_, _, _| Ok(value.clone()))
    }

    /// Fails with the given errors in order, then returns `value`.
    fn failing_then(errors: &[&str], value: Value) -> Self {
        let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        FakeInvoker::new(move |_, _, n| match errors.get(n) {
            Some(error) => Err(TaskFailure::new(
                error.clone(),
                format!("attempt {n} failed"),
            )),
            None => Ok(value.clone()),
        })
    }

    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl TaskInvoker for FakeInvoker {
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskFailure> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((resource.to_string(), input.clone()));
            calls.len() - 1
        };
        (self.handler)(resource, &input, n)
    }
}

/// Sleeps `delay` (tokio time), then returns its input.
struct SlowInvoker {
    delay: Duration,
}

#[async_trait::async_trait]
impl TaskInvoker for SlowInvoker {
    async fn invoke(&self, _resource: &str, input: Value) -> Result<Value, TaskFailure> {
        tokio::time::sleep(self.delay).await;
        Ok(input)
    }
}

#[derive(Default)]
struct Recorder {
    entered: Mutex<Vec<String>>,
    exited: Mutex<Vec<(String, Value)>>,
    retries: Mutex<Vec<(String, String, u32, Duration)>>,
}

impl Observer for Recorder {
    fn state_entered(&self, name: &str, _input: &Value) {
        self.entered.lock().unwrap().push(name.to_string());
    }
    fn state_exited(&self, name: &str, output: &Value) {
        self.exited
            .lock()
            .unwrap()
            .push((name.to_string(), output.clone()));
    }
    fn retrying(&self, state: &str, error: &str, attempt: u32, delay: Duration) {
        self.retries
            .lock()
            .unwrap()
            .push((state.to_string(), error.to_string(), attempt, delay));
    }
}

impl Recorder {
    fn delays(&self) -> Vec<Duration> {
        self.retries.lock().unwrap().iter().map(|r| r.3).collect()
    }
}

fn ctx() -> ExecutionContext {
    ExecutionContext {
        execution_id: "arn:aws:states:us-east-1:123456789012:execution:flow:run-1".into(),
        execution_name: "run-1".into(),
        state_machine_id: "arn:aws:states:us-east-1:123456789012:stateMachine:flow".into(),
        start_time: "2024-05-01T10:00:00.123Z".parse().unwrap(),
    }
}

fn machine(definition: &Value) -> StateMachine {
    StateMachine::parse(&definition.to_string(), &HashMap::new()).expect("definition parses")
}

fn parse_error(definition: &Value) -> AslError {
    StateMachine::parse(&definition.to_string(), &HashMap::new())
        .expect_err("definition is rejected")
}

async fn run_with(
    definition: &Value,
    input: Value,
    invoker: &dyn TaskInvoker,
    observer: &dyn Observer,
) -> Result<Value, ExecutionFailure> {
    machine(definition)
        .execute(input, ctx(), invoker, observer)
        .await
}

async fn run(
    definition: &Value,
    input: Value,
    invoker: &dyn TaskInvoker,
) -> Result<Value, ExecutionFailure> {
    run_with(definition, input, invoker, &NoopObserver).await
}

/// A machine with one Task state "T" (Resource "arn:task", End) plus `fields`.
fn one_task(fields: Value) -> Value {
    let mut state = json!({"Type": "Task", "Resource": "arn:task", "End": true});
    state
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    json!({"StartAt": "T", "States": {"T": state}})
}

/// A machine with one Pass state "P" (End) plus `fields`.
fn one_pass(fields: Value) -> Value {
    let mut state = json!({"Type": "Pass", "End": true});
    state
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    json!({"StartAt": "P", "States": {"P": state}})
}

// ---------------------------------------------------------------- input and output processing

#[tokio::test]
async fn inputpath_selects_part_of_the_input() {
    // Developer guide, "InputPath".
    let input = json!({
        "comment": "Example for InputPath.",
        "dataset1": {"val1": 1, "val2": 2, "val3": 3},
        "dataset2": {"val1": "a", "val2": "b", "val3": "c"}
    });
    let invoker = FakeInvoker::returning(json!("ok"));
    run(
        &one_task(json!({"InputPath": "$.dataset2"})),
        input,
        &invoker,
    )
    .await
    .unwrap();
    assert_eq!(
        invoker.calls()[0].1,
        json!({"val1": "a", "val2": "b", "val3": "c"})
    );
}

#[tokio::test]
async fn parameters_select_and_add_values() {
    // Developer guide, "Parameters".
    let input = json!({
        "comment": "Example for Parameters.",
        "product": {
            "details": {"color": "blue", "size": "small", "material": "cotton"},
            "availability": "in stock", "sku": "2317", "cost": "$23"
        }
    });
    let parameters = json!({"Parameters": {
        "comment": "Selecting what I care about.",
        "MyDetails": {"size.$": "$.product.details.size", "exists.$": "$.product.availability", "StaticValue": "foo"}
    }});
    let invoker = FakeInvoker::returning(json!("ok"));
    run(&one_task(parameters.clone()), input.clone(), &invoker)
        .await
        .unwrap();
    let expected = json!({
        "comment": "Selecting what I care about.",
        "MyDetails": {"size": "small", "exists": "in stock", "StaticValue": "foo"}
    });
    assert_eq!(invoker.calls()[0].1, expected);
    // A Pass state with Parameters outputs the payload.
    assert_eq!(
        run(&one_pass(parameters), input, &invoker).await.unwrap(),
        expected
    );
}

#[tokio::test]
async fn parameters_spec_payload_template_example() {
    // Specification, "Payload Template" (the `last3` slice is replaced by an index: slices are
    // not reference paths), with a context-object path and an intrinsic.
    let definition = one_task(json!({"Parameters": {
        "flagged": true,
        "parts": {"first.$": "$.vals[0]", "last.$": "$.vals[5]"},
        "weekday.$": "$$.State.Name",
        "formattedOutput.$": "States.Format('Today is {}', $$.Execution.Name)"
    }}));
    let invoker = FakeInvoker::returning(json!({}));
    run(
        &definition,
        json!({"flagged": 7, "vals": [0, 10, 20, 30, 40, 50]}),
        &invoker,
    )
    .await
    .unwrap();
    assert_eq!(
        invoker.calls()[0].1,
        json!({"flagged": true, "parts": {"first": 0, "last": 50}, "weekday": "T", "formattedOutput": "Today is run-1"})
    );
}

#[tokio::test]
async fn parameters_read_the_context_object() {
    let definition = one_task(json!({
        "Parameters": {
            "execution_id.$": "$$.Execution.Id",
            "execution_name.$": "$$.Execution.Name",
            "input.$": "$$.Execution.Input",
            "customer.$": "$$.Execution.Input.customer",
            "start.$": "$$.Execution.StartTime",
            "machine.$": "$$.StateMachine.Id",
            "machine_name.$": "$$.StateMachine.Name",
            "state.$": "$$.State.Name",
            "entered.$": "$$.State.EnteredTime",
            "retry.$": "$$.State.RetryCount"
        },
        "Retry": [{"ErrorEquals": ["Retryable"], "IntervalSeconds": 1}]
    }));
    let invoker = FakeInvoker::failing_then(&["Retryable"], json!({}));
    let input = json!({"customer": "c-1"});
    run(&definition, input.clone(), &invoker).await.unwrap();
    let calls = invoker.calls();
    let first = &calls[0].1;
    assert_eq!(
        first["execution_id"],
        json!("arn:aws:states:us-east-1:123456789012:execution:flow:run-1")
    );
    assert_eq!(first["execution_name"], json!("run-1"));
    assert_eq!(first["input"], input);
    assert_eq!(first["customer"], json!("c-1"));
    assert_eq!(first["start"], json!("2024-05-01T10:00:00.123Z"));
    assert_eq!(
        first["machine"],
        json!("arn:aws:states:us-east-1:123456789012:stateMachine:flow")
    );
    assert_eq!(first["machine_name"], json!("flow"));
    assert_eq!(first["state"], json!("T"));
    let entered = first["entered"].as_str().unwrap();
    assert!(
        super::choice::parse_timestamp(entered).is_some() && entered.ends_with('Z'),
        "{entered}"
    );
    assert_eq!(first["retry"], json!(0));
    // Parameters are evaluated again for the retry, with the new RetryCount.
    assert_eq!(calls[1].1["retry"], json!(1));
    assert_eq!(calls[1].1["entered"], first["entered"]);
}

#[tokio::test]
async fn result_selector_then_result_path() {
    // Developer guide, "ResultSelector" (EMR createCluster.sync example).
    let result = json!({
        "resourceType": "elasticmapreduce",
        "resource": "createCluster.sync",
        "output": {
            "SdkHttpMetadata": {
                "HttpHeaders": {
                    "Content-Length": "1112",
                    "Content-Type": "application/x-amz-JSON-1.1",
                    "Date": "Mon, 25 Nov 2019 19:41:29 GMT",
                    "x-amzn-RequestId": "1234-5678-9012"
                },
                "HttpStatusCode": 200
            },
            "SdkResponseMetadata": {"RequestId": "1234-5678-9012"},
            "ClusterId": "AKIAIOSFODNN7EXAMPLE"
        }
    });
    let definition = one_task(json!({
        "ResultSelector": {"ClusterId.$": "$.output.ClusterId", "ResourceType.$": "$.resourceType"},
        "ResultPath": "$.EMROutput"
    }));
    let out = run(
        &definition,
        json!({"OtherDataFromInput": {}}),
        &FakeInvoker::returning(result),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"OtherDataFromInput": {}, "EMROutput": {"ClusterId": "AKIAIOSFODNN7EXAMPLE", "ResourceType": "elasticmapreduce"}})
    );
}

#[tokio::test]
async fn result_selector_missing_path_is_a_runtime_error() {
    let definition = one_task(json!({"ResultSelector": {"x.$": "$.nope"}}));
    let err = run(
        &definition,
        json!({}),
        &FakeInvoker::returning(json!({"a": 1})),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.error.as_str(), err.state.as_deref()),
        ("States.Runtime", Some("T"))
    );
    assert!(
        err.cause.contains("$.nope") && err.cause.contains("ResultSelector"),
        "{}",
        err.cause
    );
}

const HELLO_INPUT: &str = r#"{"comment": "This is a test of the input and output of a Task state.", "details": "Default example", "who": "AWS Step Functions"}"#;

#[tokio::test]
async fn result_path_default_replaces_the_input() {
    // Developer guide, "Use ResultPath to replace the input with the result".
    let input: Value = serde_json::from_str(HELLO_INPUT).unwrap();
    let hello = FakeInvoker::returning(json!("Hello, AWS Step Functions!"));
    assert_eq!(
        run(&one_task(json!({})), input.clone(), &hello)
            .await
            .unwrap(),
        json!("Hello, AWS Step Functions!")
    );
    assert_eq!(
        run(&one_task(json!({"ResultPath": "$"})), input, &hello)
            .await
            .unwrap(),
        json!("Hello, AWS Step Functions!")
    );
}

#[tokio::test]
async fn result_path_includes_the_result_with_the_input() {
    // Developer guide, "Use ResultPath to include the result with the input".
    let input: Value = serde_json::from_str(HELLO_INPUT).unwrap();
    let hello = FakeInvoker::returning(json!("Hello, AWS Step Functions!"));
    let out = run(
        &one_task(json!({"ResultPath": "$.taskresult"})),
        input,
        &hello,
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({
            "comment": "This is a test of the input and output of a Task state.",
            "details": "Default example",
            "who": "AWS Step Functions",
            "taskresult": "Hello, AWS Step Functions!"
        })
    );
    // ... and as a child node of the input.
    let input = json!({"comment": "An input comment.", "strings": {"string1": "foo", "string2": "bar", "string3": "baz"}, "who": "AWS Step Functions"});
    let out = run(
        &one_task(json!({"ResultPath": "$.strings.lambdaresult"})),
        input,
        &hello,
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({
            "comment": "An input comment.",
            "strings": {"string1": "foo", "string2": "bar", "string3": "baz", "lambdaresult": "Hello, AWS Step Functions!"},
            "who": "AWS Step Functions"
        })
    );
}

#[tokio::test]
async fn result_path_updates_a_node_in_the_input() {
    // Developer guide, "Use ResultPath to update a node in the input with the result".
    let input: Value = serde_json::from_str(HELLO_INPUT).unwrap();
    let hello = FakeInvoker::returning(json!("Hello, AWS Step Functions!"));
    let out = run(&one_task(json!({"ResultPath": "$.comment"})), input, &hello)
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"comment": "Hello, AWS Step Functions!", "details": "Default example", "who": "AWS Step Functions"})
    );
}

#[tokio::test]
async fn result_path_creates_intermediate_objects() {
    // Specification: {"a": 1} + "Hi!" at $.b.greeting; {"master": {"detail": [1,2,3]}} + 6.
    let hi = FakeInvoker::returning(json!("Hi!"));
    let out = run(
        &one_task(json!({"ResultPath": "$.b.greeting"})),
        json!({"a": 1}),
        &hi,
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"a": 1, "b": {"greeting": "Hi!"}}));
    let six = FakeInvoker::returning(json!(6));
    let input = json!({"master": {"detail": [1, 2, 3]}});
    let out = run(
        &one_task(json!({"ResultPath": "$.master.detail"})),
        input.clone(),
        &six,
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"master": {"detail": 6}}));
    let out = run(
        &one_task(json!({"ResultPath": "$.master.result.sum"})),
        input,
        &six,
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"master": {"detail": [1, 2, 3], "result": {"sum": 6}}})
    );
    // Specification: numbers {"val1": 3, "val2": 4} summed, InputPath + ResultPath.
    let seven = FakeInvoker::returning(json!(7));
    let input = json!({"title": "Numbers to add", "numbers": {"val1": 3, "val2": 4}});
    let out = run(
        &one_task(json!({"InputPath": "$.numbers", "ResultPath": "$.sum"})),
        input,
        &seven,
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"title": "Numbers to add", "numbers": {"val1": 3, "val2": 4}, "sum": 7})
    );
    assert_eq!(seven.calls()[0].1, json!({"val1": 3, "val2": 4}));
}

#[tokio::test]
async fn result_path_null_discards_the_result() {
    let invoker = FakeInvoker::returning(json!({"big": "result"}));
    let out = run(
        &one_task(json!({"ResultPath": null})),
        json!({"keep": 1}),
        &invoker,
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"keep": 1}));
}

#[tokio::test]
async fn result_path_on_a_non_object_input_fails() {
    // Specification, "Runtime Errors": input "foo" with ResultPath $.x.
    let err = run(
        &one_task(json!({"ResultPath": "$.x"})),
        json!("foo"),
        &FakeInvoker::returning(json!(1)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error, "States.ResultPathMatchFailure");
    // It is a state error, so a catcher can handle it.
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "ResultPath": "$.x", "End": true,
              "Catch": [{"ErrorEquals": ["States.ResultPathMatchFailure"], "Next": "Caught"}]},
        "Caught": {"Type": "Pass", "End": true}}});
    let out = run(&definition, json!("foo"), &FakeInvoker::returning(json!(1)))
        .await
        .unwrap();
    assert_eq!(out["Error"], json!("States.ResultPathMatchFailure"));
}

#[tokio::test]
async fn inputpath_resultpath_outputpath_together() {
    // Developer guide, "InputPath, ResultPath and OutputPath Example".
    let definition = json!({
        "Comment": "A Hello World example of the Amazon States Language using an AWS Lambda function",
        "StartAt": "HelloWorld",
        "States": {"HelloWorld": {
            "Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:HelloFunction",
            "InputPath": "$.lambda",
            "ResultPath": "$.data.lambdaresult",
            "OutputPath": "$.data",
            "End": true
        }}
    });
    let input = json!({"comment": "An input comment.", "data": {"val1": 23, "val2": 17}, "extra": "foo", "lambda": {"who": "AWS Step Functions"}});
    let invoker = FakeInvoker::new(|_, input, _| {
        Ok(json!(format!("Hello, {}!", input["who"].as_str().unwrap())))
    });
    let out = run(&definition, input, &invoker).await.unwrap();
    assert_eq!(invoker.calls()[0].1, json!({"who": "AWS Step Functions"}));
    assert_eq!(
        out,
        json!({"val1": 23, "val2": 17, "lambdaresult": "Hello, AWS Step Functions!"})
    );
}

#[tokio::test]
async fn null_input_and_output_paths_give_empty_objects() {
    let invoker = FakeInvoker::returning(json!("r"));
    run(
        &one_task(json!({"InputPath": null})),
        json!({"a": 1}),
        &invoker,
    )
    .await
    .unwrap();
    assert_eq!(invoker.calls()[0].1, json!({}));
    let out = run(
        &one_task(json!({"OutputPath": null})),
        json!({"a": 1}),
        &invoker,
    )
    .await
    .unwrap();
    assert_eq!(out, json!({}));
    let out = run(
        &one_pass(json!({"InputPath": null})),
        json!({"a": 1}),
        &invoker,
    )
    .await
    .unwrap();
    assert_eq!(out, json!({}));
}

#[tokio::test]
async fn a_path_that_matches_nothing_is_a_runtime_error_that_is_not_caught() {
    let catch_all = json!({"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                           "Retry": [{"ErrorEquals": ["States.ALL"]}]});
    for fields in [
        json!({"Parameters": {"x.$": "$.missing"}}),
        json!({"InputPath": "$.missing"}),
        json!({"OutputPath": "$.missing"}),
        json!({"Parameters": {"x.$": "States.Format('{}', $.missing)"}}),
    ] {
        let mut definition = one_task(fields.clone());
        let task = definition["States"]["T"].as_object_mut().unwrap();
        task.extend(catch_all.as_object().unwrap().clone());
        definition["States"]["Caught"] = json!({"Type": "Succeed"});
        let invoker = FakeInvoker::returning(json!({}));
        let err = run(&definition, json!({"present": 1}), &invoker)
            .await
            .unwrap_err();
        assert_eq!(err.error, "States.Runtime", "{fields}");
        assert_eq!(err.state.as_deref(), Some("T"));
        assert!(err.cause.contains("$.missing"), "{}", err.cause);
        assert!(
            invoker.calls().len() <= 1,
            "a runtime error is never retried"
        );
    }
}

#[tokio::test]
async fn a_null_value_is_not_a_missing_value() {
    let invoker = FakeInvoker::returning(json!({}));
    run(
        &one_task(json!({"Parameters": {"x.$": "$.n"}})),
        json!({"n": null}),
        &invoker,
    )
    .await
    .unwrap();
    assert_eq!(invoker.calls()[0].1, json!({"x": null}));
}

// ---------------------------------------------------------------- Pass, Wait, Succeed, Fail

#[tokio::test]
async fn pass_with_result_and_result_path() {
    // Specification, Pass state "No-op" example.
    let definition = one_pass(json!({
        "Result": {"x-datum": 0.381018, "y-datum": 622.2269926397355},
        "ResultPath": "$.coords"
    }));
    let out = run(
        &definition,
        json!({"georefOf": "Home"}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"georefOf": "Home", "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355}})
    );
    // Without Result and ResultPath a Pass state copies its input; "Result" is not a template.
    let out = run(
        &one_pass(json!({})),
        json!({"a": 1}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"a": 1}));
    let out = run(
        &one_pass(json!({"Result": {"x.$": "$.a"}})),
        json!({"a": 1}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"x.$": "$.a"}));
}

#[tokio::test(start_paused = true)]
async fn wait_seconds_and_seconds_path() {
    let definition = json!({"StartAt": "W1", "States": {
        "W1": {"Type": "Wait", "Seconds": 10, "Next": "W2"},
        "W2": {"Type": "Wait", "SecondsPath": "$.delay", "OutputPath": "$.delay", "End": true}}});
    let start = Instant::now();
    let out = run(
        &definition,
        json!({"delay": 5}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    assert_eq!(out, json!(5));
    let err = run(
        &definition,
        json!({"delay": "soon"}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.error.as_str(), err.state.as_deref()),
        ("States.Runtime", Some("W2"))
    );
}

#[tokio::test(start_paused = true)]
async fn wait_until_a_timestamp() {
    // A timestamp in the past does not wait; TimestampPath reads the effective input.
    let definition = json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Timestamp": "2016-03-14T01:59:00Z", "Next": "WP"},
        "WP": {"Type": "Wait", "TimestampPath": "$.expirydate", "End": true}}});
    let start = Instant::now();
    run(
        &definition,
        json!({"expirydate": "2016-03-14T01:59:00Z"}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    let err = run(
        &definition,
        json!({"expirydate": "tomorrow"}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error, "States.Runtime");
}

#[tokio::test]
async fn succeed_applies_input_and_output_paths() {
    let definition = json!({"StartAt": "S", "States": {"S": {"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}}});
    let out = run(
        &definition,
        json!({"a": {"b": 2}}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap();
    assert_eq!(out, json!(2));
}

#[tokio::test]
async fn fail_with_literal_error_and_cause() {
    let definition = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "ErrorA", "Cause": "Kaiju attack"}}});
    let err = run(&definition, json!({}), &FakeInvoker::returning(json!(null)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ExecutionFailure {
            error: "ErrorA".into(),
            cause: "Kaiju attack".into(),
            state: Some("F".into())
        }
    );
    assert_eq!(err.to_string(), "ErrorA: Kaiju attack");
}

#[tokio::test]
async fn fail_with_error_path_and_cause_path() {
    // Specification: ErrorPath / CausePath read the state input; they may be intrinsics.
    let definition = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Comment": "my error comment", "ErrorPath": "$.Error", "CausePath": "$.Cause"}}});
    let err = run(
        &definition,
        json!({"Error": "Oops", "Cause": "it broke"}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.error.as_str(), err.cause.as_str()),
        ("Oops", "it broke")
    );
    let definition = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "CausePath": "States.Format('run {} failed: {}', $$.Execution.Name, $.why)"}}});
    let err = run(
        &definition,
        json!({"why": "timeout"}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.cause, "run run-1 failed: timeout");
    // A missing or non-string path is a runtime error.
    let definition =
        json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.Error"}}});
    let err = run(
        &definition,
        json!({"Error": 1}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error, "States.Runtime");
    let err = run(&definition, json!({}), &FakeInvoker::returning(json!(null)))
        .await
        .unwrap_err();
    assert_eq!(err.error, "States.Runtime");
}

// ---------------------------------------------------------------- Choice

fn choice_machine(choices: Value, default: Option<&str>) -> Value {
    let mut choice = json!({"Type": "Choice", "Choices": choices});
    if let Some(default) = default {
        choice["Default"] = json!(default);
    }
    json!({"StartAt": "C", "States": {
        "C": choice,
        "Public": {"Type": "Pass", "Result": "Public", "End": true},
        "ValueIsZero": {"Type": "Pass", "Result": "ValueIsZero", "End": true},
        "ValueInTwenties": {"Type": "Pass", "Result": "ValueInTwenties", "End": true},
        "StartAudit": {"Type": "Pass", "Result": "StartAudit", "End": true},
        "RecordEvent": {"Type": "Pass", "Result": "RecordEvent", "End": true}
    }})
}

#[tokio::test]
async fn choice_spec_example() {
    // Specification, Choice state "DispatchEvent".
    let definition = choice_machine(
        json!([
            {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
            {"And": [
                {"Variable": "$.value", "IsPresent": true},
                {"Variable": "$.value", "IsNumeric": true},
                {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                {"Variable": "$.value", "NumericLessThan": 30}
            ], "Next": "ValueInTwenties"},
            {"Variable": "$.rating", "NumericGreaterThanPath": "$.auditThreshold", "Next": "StartAudit"}
        ]),
        Some("RecordEvent"),
    );
    let none = FakeInvoker::returning(json!(null));
    assert_eq!(
        run(&definition, json!({"type": "Private", "value": 22}), &none)
            .await
            .unwrap(),
        json!("ValueInTwenties")
    );
    assert_eq!(
        run(&definition, json!({"type": "Public", "value": 22}), &none)
            .await
            .unwrap(),
        json!("Public")
    );
    assert_eq!(
        run(
            &definition,
            json!({"type": "Private", "value": 5, "rating": 9, "auditThreshold": 8}),
            &none
        )
        .await
        .unwrap(),
        json!("StartAudit")
    );
    assert_eq!(
        run(
            &definition,
            json!({"type": "Private", "value": 5, "rating": 1, "auditThreshold": 8}),
            &none
        )
        .await
        .unwrap(),
        json!("RecordEvent")
    );
}

#[tokio::test]
async fn choice_developer_guide_example_and_order() {
    // Developer guide, "ChoiceStateX": rules are tried in order; the first match wins.
    let definition = choice_machine(
        json!([
            {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
            {"Variable": "$.value", "NumericEquals": 0, "Next": "ValueIsZero"},
            {"And": [{"Variable": "$.value", "NumericGreaterThanEquals": 20}, {"Variable": "$.value", "NumericLessThan": 30}], "Next": "ValueInTwenties"}
        ]),
        Some("RecordEvent"),
    );
    let none = FakeInvoker::returning(json!(null));
    assert_eq!(
        run(&definition, json!({"type": "Private", "value": 22}), &none)
            .await
            .unwrap(),
        json!("ValueInTwenties")
    );
    assert_eq!(
        run(&definition, json!({"type": "Private", "value": 0}), &none)
            .await
            .unwrap(),
        json!("ValueIsZero")
    );
    assert_eq!(
        run(&definition, json!({"type": "Public", "value": 0}), &none)
            .await
            .unwrap(),
        json!("Public")
    );
    // "If the state input doesn't contain the $.type field, the execution fails."
    let err = run(&definition, json!({"value": 22}), &none)
        .await
        .unwrap_err();
    assert_eq!(
        (err.error.as_str(), err.state.as_deref()),
        ("States.Runtime", Some("C"))
    );
    assert!(err.cause.contains("$.type"), "{}", err.cause);
}

#[tokio::test]
async fn choice_without_a_match_or_default_fails() {
    let definition = choice_machine(
        json!([{"Variable": "$.v", "StringMatches": "log-*.txt", "Next": "Public"}]),
        None,
    );
    let none = FakeInvoker::returning(json!(null));
    assert_eq!(
        run(&definition, json!({"v": "log-1.txt"}), &none)
            .await
            .unwrap(),
        json!("Public")
    );
    let err = run(&definition, json!({"v": "log-1.csv"}), &none)
        .await
        .unwrap_err();
    assert_eq!(
        (err.error.as_str(), err.state.as_deref()),
        ("States.NoChoiceMatched", Some("C"))
    );
}

#[tokio::test]
async fn choice_uses_input_path_and_passes_its_input_on() {
    let definition = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "InputPath": "$.data", "OutputPath": "$.n",
              "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Done"}], "Default": "Done"},
        "Done": {"Type": "Succeed"}}});
    let out = run(
        &definition,
        json!({"data": {"n": 2}}),
        &FakeInvoker::returning(json!(null)),
    )
    .await
    .unwrap();
    assert_eq!(out, json!(2));
}

// ---------------------------------------------------------------- Retry and Catch

#[tokio::test(start_paused = true)]
async fn retry_backoff_sleeps_2_4_8_then_fails() {
    let definition = one_task(
        json!({"Retry": [{"ErrorEquals": ["Throttled"], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2}]}),
    );
    let invoker = FakeInvoker::failing_then(&["Throttled"; 10], json!("never"));
    let recorder = Recorder::default();
    let start = Instant::now();
    let err = run_with(&definition, json!({}), &invoker, &recorder)
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(14));
    assert_eq!(
        recorder.delays(),
        vec![
            Duration::from_secs(2),
            Duration::from_secs(4),
            Duration::from_secs(8)
        ]
    );
    assert_eq!(invoker.calls().len(), 4, "1 attempt + 3 retries");
    assert_eq!(
        (err.error.as_str(), err.cause.as_str(), err.state.as_deref()),
        ("Throttled", "attempt 3 failed", Some("T"))
    );
    let attempts: Vec<u32> = recorder
        .retries
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn retry_succeeds_after_transient_failures() {
    let definition = one_task(json!({"Retry": [{"ErrorEquals": ["Retryable"]}]}));
    let invoker = FakeInvoker::failing_then(&["Retryable", "Retryable"], json!("done"));
    let recorder = Recorder::default();
    let out = run_with(&definition, json!({}), &invoker, &recorder)
        .await
        .unwrap();
    assert_eq!(out, json!("done"));
    // Defaults: IntervalSeconds 1, BackoffRate 2.0.
    assert_eq!(
        recorder.delays(),
        vec![Duration::from_secs(1), Duration::from_secs(2)]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_max_delay_seconds_caps_the_backoff() {
    let definition = one_task(
        json!({"Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 3, "MaxAttempts": 4, "BackoffRate": 2.0, "MaxDelaySeconds": 10}]}),
    );
    let invoker = FakeInvoker::failing_then(&["X"; 10], json!(null));
    let recorder = Recorder::default();
    run_with(&definition, json!({}), &invoker, &recorder)
        .await
        .unwrap_err();
    assert_eq!(
        recorder.delays(),
        [3, 6, 10, 10].map(Duration::from_secs).to_vec()
    );
}

#[tokio::test(start_paused = true)]
async fn retry_full_jitter_stays_within_the_backoff() {
    let definition = one_task(
        json!({"Retry": [{"ErrorEquals": ["X"], "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2, "MaxDelaySeconds": 20, "JitterStrategy": "FULL"}]}),
    );
    let invoker = FakeInvoker::failing_then(&["X"; 10], json!(null));
    let recorder = Recorder::default();
    let start = Instant::now();
    run_with(&definition, json!({}), &invoker, &recorder)
        .await
        .unwrap_err();
    let delays = recorder.delays();
    let caps = [2, 4, 8, 16, 20].map(Duration::from_secs);
    assert_eq!(delays.len(), 5);
    for (delay, cap) in delays.iter().zip(caps) {
        assert!(*delay <= cap, "{delay:?} > {cap:?}");
    }
    assert_eq!(start.elapsed(), delays.iter().sum::<Duration>());
}

#[tokio::test(start_paused = true)]
async fn retriers_are_scanned_in_order_with_their_own_counters() {
    // Specification "Complex retry scenarios": errors ErrorA, ErrorB, ErrorC, ErrorB -> waits
    // of 1 and 2 s (first retrier) and 5 s (second); the fourth error matches the first
    // retrier, whose MaxAttempts (2) is used up, so the Catch sends the execution to Z.
    let definition = json!({"StartAt": "X", "States": {
        "X": {"Type": "Task", "Resource": "arn:aws:states:us-east-1:123456789012:task:X", "Next": "Y",
              "Retry": [{"ErrorEquals": ["ErrorA", "ErrorB"], "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 2},
                        {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Z"}]},
        "Y": {"Type": "Succeed"},
        "Z": {"Type": "Pass", "End": true}}});
    let invoker = FakeInvoker::failing_then(
        &["ErrorA", "ErrorB", "ErrorC", "ErrorB", "ErrorB"],
        json!("ok"),
    );
    let recorder = Recorder::default();
    let out = run_with(&definition, json!({}), &invoker, &recorder)
        .await
        .unwrap();
    assert_eq!(
        recorder.delays(),
        [1, 2, 5].map(Duration::from_secs).to_vec()
    );
    assert_eq!(invoker.calls().len(), 4);
    assert_eq!(out, json!({"Error": "ErrorB", "Cause": "attempt 3 failed"}));
    assert_eq!(recorder.entered.lock().unwrap().clone(), vec!["X", "Z"]);

    // Counters are per retrier: ErrorA (1 s), ErrorC (5 s), ErrorB (2 s), ErrorC (10 s), then
    // ErrorB finds the first retrier used up.
    let invoker = FakeInvoker::failing_then(
        &["ErrorA", "ErrorC", "ErrorB", "ErrorC", "ErrorB"],
        json!("ok"),
    );
    let recorder = Recorder::default();
    run_with(&definition, json!({}), &invoker, &recorder)
        .await
        .unwrap();
    assert_eq!(
        recorder.delays(),
        [1, 5, 2, 10].map(Duration::from_secs).to_vec()
    );
}

#[tokio::test(start_paused = true)]
async fn max_attempts_zero_never_retries_and_task_failed_skips_timeouts() {
    // Developer guide: retry any error except States.Timeout.
    let definition = one_task(json!({
        "TimeoutSeconds": 1,
        "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 0}, {"ErrorEquals": ["States.ALL"]}]
    }));
    let recorder = Recorder::default();
    let err = run_with(
        &definition,
        json!({}),
        &SlowInvoker {
            delay: Duration::from_secs(5),
        },
        &recorder,
    )
    .await
    .unwrap_err();
    assert_eq!(err.error, "States.Timeout");
    assert!(recorder.delays().is_empty());
    // States.TaskFailed matches task errors but not States.Timeout.
    let definition =
        one_task(json!({"TimeoutSeconds": 1, "Retry": [{"ErrorEquals": ["States.TaskFailed"]}]}));
    let recorder = Recorder::default();
    run_with(
        &definition,
        json!({}),
        &SlowInvoker {
            delay: Duration::from_secs(5),
        },
        &recorder,
    )
    .await
    .unwrap_err();
    assert!(recorder.delays().is_empty());
    let invoker = FakeInvoker::failing_then(&["Lambda.Unknown"], json!("ok"));
    assert_eq!(
        run(&definition, json!({}), &invoker).await.unwrap(),
        json!("ok")
    );
}

#[tokio::test]
async fn catch_with_result_path_keeps_the_input() {
    // Developer guide, "Use ResultPath to include both error and input in a Catch".
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:task", "End": true,
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "NextTask", "ResultPath": "$.error"}]},
        "NextTask": {"Type": "Pass", "End": true}}});
    let invoker = FakeInvoker::new(|_, _, _| Err(TaskFailure::new("Error here", "details")));
    let out = run(&definition, json!({"foo": "bar"}), &invoker)
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"foo": "bar", "error": {"Error": "Error here", "Cause": "details"}})
    );
}

#[tokio::test]
async fn catchers_are_scanned_in_order_and_default_result_path_replaces_the_input() {
    // Specification, "Fallback states" example.
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:task", "End": true, "Catch": [
            {"ErrorEquals": ["java.lang.Exception"], "ResultPath": "$.error-info", "Next": "RecoveryState"},
            {"ErrorEquals": ["States.ALL"], "Next": "EndMachine"}]},
        "RecoveryState": {"Type": "Pass", "Result": "recovered", "ResultPath": "$.state", "End": true},
        "EndMachine": {"Type": "Pass", "End": true}}});
    let java = FakeInvoker::new(|_, _, _| Err(TaskFailure::new("java.lang.Exception", "NPE")));
    let out = run(&definition, json!({"in": 1}), &java).await.unwrap();
    assert_eq!(
        out,
        json!({"in": 1, "error-info": {"Error": "java.lang.Exception", "Cause": "NPE"}, "state": "recovered"})
    );
    let other = FakeInvoker::new(|_, _, _| Err(TaskFailure::new("Other", "why")));
    let out = run(&definition, json!({"in": 1}), &other).await.unwrap();
    assert_eq!(out, json!({"Error": "Other", "Cause": "why"}));
}

#[tokio::test(start_paused = true)]
async fn task_timeout_seconds_raises_states_timeout() {
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:slow", "TimeoutSeconds": 3, "HeartbeatSeconds": 1, "End": true,
              "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}]},
        "TimedOut": {"Type": "Pass", "End": true}}});
    let start = Instant::now();
    let out = run(
        &definition,
        json!({}),
        &SlowInvoker {
            delay: Duration::from_secs(10),
        },
    )
    .await
    .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(out["Error"], json!("States.Timeout"));
    // A task that finishes in time is not affected.
    let out = run(
        &definition,
        json!({"fast": true}),
        &SlowInvoker {
            delay: Duration::from_secs(2),
        },
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"fast": true}));
}

#[tokio::test(start_paused = true)]
async fn state_machine_timeout_seconds_fails_the_execution() {
    let definition = json!({"StartAt": "W", "TimeoutSeconds": 5, "States": {"W": {"Type": "Wait", "Seconds": 60, "End": true}}});
    let start = Instant::now();
    let err = run(&definition, json!({}), &FakeInvoker::returning(json!(null)))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(
        (err.error.as_str(), err.state.as_deref()),
        ("States.Timeout", Some("W"))
    );
}

// ---------------------------------------------------------------- loops

#[tokio::test]
async fn a_choice_loop_back_to_a_task_terminates() {
    let definition = json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Result": {"count": 0}, "ResultPath": "$.counter", "Next": "Increment"},
        "Increment": {"Type": "Task", "Resource": "arn:inc", "Parameters": {"count.$": "$.counter.count"},
                      "ResultPath": "$.counter", "Next": "Again?"},
        "Again?": {"Type": "Choice", "Choices": [{"Variable": "$.counter.count", "NumericLessThan": 5, "Next": "Increment"}], "Default": "Done"},
        "Done": {"Type": "Succeed", "OutputPath": "$.counter"}}});
    let invoker =
        FakeInvoker::new(|_, input, _| Ok(json!({"count": input["count"].as_i64().unwrap() + 1})));
    let recorder = Recorder::default();
    let out = run_with(&definition, json!({}), &invoker, &recorder)
        .await
        .unwrap();
    assert_eq!(out, json!({"count": 5}));
    assert_eq!(invoker.calls().len(), 5);
    assert_eq!(recorder.entered.lock().unwrap().len(), 1 + 5 * 2 + 1);
}

#[tokio::test]
async fn an_endless_loop_hits_the_transition_limit() {
    let definition = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$", "IsPresent": true, "Next": "A"}]}}});
    let machine = machine(&definition).with_max_transitions(100);
    let err = machine
        .execute(
            json!({}),
            ctx(),
            &FakeInvoker::returning(json!(null)),
            &NoopObserver,
        )
        .await
        .unwrap_err();
    assert_eq!(err.error, "States.Runtime");
    assert!(err.cause.contains("100"), "{}", err.cause);
}

#[tokio::test]
async fn intrinsics_in_a_pass_state() {
    let definition = one_pass(json!({"Parameters": {
        "greeting.$": "States.Format('Welcome to {} {}\\'s playlist.', $.firstName, $.lastName)",
        "parsed.$": "States.StringToJson($.escapedJsonString)",
        "text.$": "States.JsonToString($.unescapedJson)",
        "ids.$": "States.Array($.Id)",
        "next.$": "States.MathAdd($.value1, $.step)",
        "length.$": "States.ArrayLength($.inputArray)",
        "merged.$": "States.JsonMerge($.json1, $.json2, false)",
        "parts.$": "States.StringSplit($.inputString, $.splitter)",
        "third.$": "States.ArrayGetItem($.inputArray, 2)",
        "id.$": "States.UUID()"
    }}));
    let input = json!({
        "firstName": "Ada", "lastName": "Lovelace",
        "escapedJsonString": "{\"foo\": \"bar\"}",
        "unescapedJson": {"foo": "bar"},
        "Id": 123456,
        "value1": 111, "step": -1,
        "inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9],
        "json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3},
        "inputString": "1,2,3,4,5", "splitter": ","
    });
    let out = run(&definition, input, &FakeInvoker::returning(json!(null)))
        .await
        .unwrap();
    assert_eq!(
        out["greeting"],
        json!("Welcome to Ada Lovelace's playlist.")
    );
    assert_eq!(out["parsed"], json!({"foo": "bar"}));
    assert_eq!(out["text"], json!("{\"foo\":\"bar\"}"));
    assert_eq!(out["ids"], json!([123456]));
    assert_eq!(out["next"], json!(110));
    assert_eq!(out["length"], json!(9));
    assert_eq!(
        out["merged"],
        json!({"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3})
    );
    assert_eq!(out["parts"], json!(["1", "2", "3", "4", "5"]));
    assert_eq!(out["third"], json!(3));
    assert_eq!(out["id"].as_str().unwrap().len(), 36);
}

// ---------------------------------------------------------------- the ferry flow

const FERRY_FLOW: &str = r#"{"Comment":"ferry flow run","StartAt":"Start Run","States":{
 "Start Run":{"Type":"Task","Resource":"${StartRunFunctionArn}","Parameters":{"request.$":"$","execution_id.$":"$$.Execution.Id","execution_name.$":"$$.Execution.Name"},"ResultPath":"$","Retry":[{"ErrorEquals":["Throttled","Retryable"],"IntervalSeconds":2,"MaxAttempts":3,"BackoffRate":2}],"Catch":[{"ErrorEquals":["States.ALL"],"ResultPath":"$.error","Next":"Start Failed"}],"Next":"Fetch Chunk"},
 "Fetch Chunk":{"Type":"Task","Resource":"${FetchPageFunctionArn}","Parameters":{"run.$":"$.run","cursor.$":"$.page.cursor","chunk.$":"$.page.next_chunk"},"ResultPath":"$.page","Next":"More Data?"},
 "More Data?":{"Type":"Choice","Choices":[{"Variable":"$.page.has_more","BooleanEquals":true,"Next":"Fetch Chunk"}],"Default":"Done"},
 "Done":{"Type":"Succeed"},
 "Start Failed":{"Type":"Fail","ErrorPath":"$.error.Error","CausePath":"$.error.Cause"}}}"#;

fn ferry_substitutions() -> HashMap<String, String> {
    HashMap::from([
        (
            "StartRunFunctionArn".to_string(),
            "arn:aws:lambda:us-east-1:1:function:start-run".to_string(),
        ),
        (
            "FetchPageFunctionArn".to_string(),
            "arn:aws:lambda:us-east-1:1:function:fetch-page".to_string(),
        ),
    ])
}

/// start-run: throttled `throttles` times, then `start_error` or a run with an empty page.
/// fetch-page: three chunks; `has_more` is false on the third.
fn ferry_invoker(throttles: usize, start_error: Option<&'static str>) -> FakeInvoker {
    let start_calls = Mutex::new(0usize);
    FakeInvoker::new(move |resource, input, _| {
        if resource.ends_with("start-run") {
            let mut n = start_calls.lock().unwrap();
            *n += 1;
            if *n <= throttles {
                return Err(TaskFailure::new("Throttled", "rate exceeded"));
            }
            if let Some(error) = start_error {
                return Err(TaskFailure::new(error, "flow 'crm' does not exist"));
            }
            Ok(
                json!({"run": {"id": "run-42", "flow": input["request"]["flow"]}, "page": {"cursor": null, "next_chunk": 0, "has_more": true}}),
            )
        } else if resource.ends_with("fetch-page") {
            let chunk = input["chunk"].as_i64().unwrap();
            Ok(
                json!({"cursor": format!("c{}", chunk + 1), "next_chunk": chunk + 1, "has_more": chunk + 1 < 3, "records": 10}),
            )
        } else {
            Err(TaskFailure::new("UnknownResource", resource.to_string()))
        }
    })
}

#[test]
fn ferry_flow_placeholders_are_all_substituted() {
    let placeholders = StateMachine::placeholders(FERRY_FLOW);
    let keys: BTreeSet<String> = ferry_substitutions().into_keys().collect();
    assert_eq!(placeholders, keys);
    let machine = StateMachine::parse(FERRY_FLOW, &ferry_substitutions()).unwrap();
    assert_eq!(machine.start_at(), "Start Run");
    assert_eq!(machine.comment(), Some("ferry flow run"));
    assert_eq!(
        machine.state_names(),
        vec![
            "Done",
            "Fetch Chunk",
            "More Data?",
            "Start Failed",
            "Start Run"
        ]
    );
    assert_eq!(
        machine.resources().into_iter().collect::<Vec<_>>(),
        vec![
            "arn:aws:lambda:us-east-1:1:function:fetch-page",
            "arn:aws:lambda:us-east-1:1:function:start-run"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn ferry_flow_pages_until_done() {
    let machine = StateMachine::parse(FERRY_FLOW, &ferry_substitutions()).unwrap();
    let invoker = ferry_invoker(2, None);
    let recorder = Recorder::default();
    let start = Instant::now();
    let out = machine
        .execute(json!({"flow": "crm"}), ctx(), &invoker, &recorder)
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"run": {"id": "run-42", "flow": "crm"}, "page": {"cursor": "c3", "next_chunk": 3, "has_more": false, "records": 10}})
    );
    // Two throttles: retried after 2 s and 4 s.
    assert_eq!(recorder.delays(), [2, 4].map(Duration::from_secs).to_vec());
    assert_eq!(start.elapsed(), Duration::from_secs(6));
    let calls = invoker.calls();
    assert_eq!(
        calls[0],
        (
            "arn:aws:lambda:us-east-1:1:function:start-run".to_string(),
            json!({"request": {"flow": "crm"}, "execution_id": "arn:aws:states:us-east-1:123456789012:execution:flow:run-1", "execution_name": "run-1"})
        )
    );
    let fetches: Vec<Value> = calls
        .iter()
        .filter(|c| c.0.ends_with("fetch-page"))
        .map(|c| c.1.clone())
        .collect();
    assert_eq!(
        fetches,
        vec![
            json!({"run": {"id": "run-42", "flow": "crm"}, "cursor": null, "chunk": 0}),
            json!({"run": {"id": "run-42", "flow": "crm"}, "cursor": "c1", "chunk": 1}),
            json!({"run": {"id": "run-42", "flow": "crm"}, "cursor": "c2", "chunk": 2}),
        ]
    );
    let entered = recorder.entered.lock().unwrap().clone();
    assert_eq!(
        entered,
        vec![
            "Start Run",
            "Fetch Chunk",
            "More Data?",
            "Fetch Chunk",
            "More Data?",
            "Fetch Chunk",
            "More Data?",
            "Done"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn ferry_flow_start_failure_reaches_the_fail_state() {
    let machine = StateMachine::parse(FERRY_FLOW, &ferry_substitutions()).unwrap();
    // A non-retryable error is caught at once and reported by "Start Failed".
    let err = machine
        .execute(
            json!({"flow": "crm"}),
            ctx(),
            &ferry_invoker(0, Some("FlowNotFound")),
            &NoopObserver,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ExecutionFailure {
            error: "FlowNotFound".into(),
            cause: "flow 'crm' does not exist".into(),
            state: Some("Start Failed".into())
        }
    );
    // Throttled four times: three retries (2 + 4 + 8 s), then caught.
    let start = Instant::now();
    let err = machine
        .execute(
            json!({"flow": "crm"}),
            ctx(),
            &ferry_invoker(4, None),
            &NoopObserver,
        )
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(14));
    assert_eq!(
        (err.error.as_str(), err.cause.as_str()),
        ("Throttled", "rate exceeded")
    );
}

#[test]
fn execute_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let machine = StateMachine::parse(FERRY_FLOW, &ferry_substitutions()).unwrap();
    let invoker = ferry_invoker(0, None);
    let future = machine.execute(json!({}), ctx(), &invoker, &NoopObserver);
    assert_send(&future);
}

// ---------------------------------------------------------------- parse-time rejection

#[test]
fn rejects_parallel_states_and_maps_without_a_processor() {
    let err =
        parse_error(&json!({"StartAt": "M", "States": {"M": {"Type": "Parallel", "End": true}}}));
    assert!(
        matches!(&err, AslError::Unsupported { state: Some(s), field, .. } if s == "M" && field == "Type"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("Task, Pass, Choice, Wait, Succeed, Fail, Map"),
        "{err}"
    );
    let err = parse_error(&json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true}}}));
    assert!(
        matches!(&err, AslError::MissingField { state: Some(s), field } if s == "M" && field == "ItemProcessor"),
        "{err}"
    );
    let err =
        parse_error(&json!({"StartAt": "M", "States": {"M": {"Type": "Activity", "End": true}}}));
    assert!(matches!(err, AslError::InvalidField { .. }), "{err}");
}

#[test]
fn rejects_unknown_fields() {
    let err = parse_error(&one_task(json!({"Retries": []})));
    assert_eq!(err.state(), Some("T"));
    assert_eq!(err.field(), "Retries");
    assert!(
        matches!(&err, AslError::UnknownField { allowed, .. } if allowed.contains("Retry")),
        "{err}"
    );
    assert!(err.to_string().contains("state 'T'"), "{err}");
    let err = parse_error(
        &json!({"StartAt": "P", "Stats": {}, "States": {"P": {"Type": "Pass", "End": true}}}),
    );
    assert_eq!((err.state(), err.field()), (None, "Stats"));
    // A Fail state has no InputPath; Succeed has no ResultPath.
    let err =
        parse_error(&json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "InputPath": "$"}}}));
    assert_eq!((err.state(), err.field()), (Some("F"), "InputPath"));
    let err = parse_error(
        &json!({"StartAt": "S", "States": {"S": {"Type": "Succeed", "ResultPath": "$"}}}),
    );
    assert_eq!(err.field(), "ResultPath");
    // Unknown fields inside retriers and choice rules are reported with their position.
    let err = parse_error(&one_task(
        json!({"Retry": [{"ErrorEquals": ["X"], "Interval": 1}]}),
    ));
    assert_eq!(err.field(), "Retry[0].Interval");
}

#[test]
fn rejects_unknown_and_unsupported_intrinsics() {
    let err = parse_error(&one_task(
        json!({"Parameters": {"nested": {"x.$": "States.Reverse($.a)"}}}),
    ));
    assert!(matches!(&err, AslError::Unsupported { .. }), "{err}");
    assert_eq!(
        (err.state(), err.field()),
        (Some("T"), "Parameters.nested.x.$")
    );
    assert!(err.to_string().contains("States.Format"), "{err}");
    let err = parse_error(&one_task(
        json!({"ResultSelector": {"h.$": "States.Hash($.a, 'SHA-1')"}}),
    ));
    assert_eq!(err.field(), "ResultSelector.h.$");
    let err = parse_error(&one_task(
        json!({"Parameters": {"x.$": "States.MathAdd($.a)"}}),
    ));
    assert!(matches!(&err, AslError::InvalidField { .. }), "{err}");
    let err = parse_error(&one_task(json!({"Parameters": {"x.$": "not a path"}})));
    assert_eq!(err.field(), "Parameters.x.$");
}

#[test]
fn rejects_unsubstituted_placeholders() {
    let subs = HashMap::from([("StartRunFunctionArn".to_string(), "arn:start".to_string())]);
    let err = StateMachine::parse(FERRY_FLOW, &subs).unwrap_err();
    assert_eq!(
        err,
        AslError::UnsubstitutedPlaceholder {
            state: Some("Fetch Chunk".into()),
            field: "Resource".into(),
            name: "FetchPageFunctionArn".into()
        }
    );
    assert!(err.to_string().contains("${FetchPageFunctionArn}"), "{err}");
    let err = parse_error(&one_task(
        json!({"Parameters": {"table": "${TableName}", "list": ["a", "${Other}"]}}),
    ));
    assert_eq!(err.field(), "Parameters.table");
}

#[tokio::test]
async fn substitutes_placeholders_anywhere_in_strings() {
    let definition = r#"{"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"bucket": "s3://${Bucket}/${Prefix}/x", "${Key}": 1}, "End": true}}}"#;
    let subs = HashMap::from([
        ("Bucket".to_string(), "data".to_string()),
        ("Prefix".to_string(), "raw".to_string()),
        ("Key".to_string(), "k".to_string()),
    ]);
    let machine = StateMachine::parse(definition, &subs).unwrap();
    let out = machine
        .execute(
            json!({}),
            ctx(),
            &FakeInvoker::returning(json!(null)),
            &NoopObserver,
        )
        .await
        .unwrap();
    assert_eq!(out, json!({"bucket": "s3://data/raw/x", "k": 1}));
}

#[test]
fn rejects_dangling_transitions() {
    let err = parse_error(&json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}));
    assert_eq!(
        err,
        AslError::MissingTarget {
            state: Some("A".into()),
            field: "Next".into(),
            target: "B".into()
        }
    );
    let err = parse_error(&json!({"StartAt": "X", "States": {"A": {"Type": "Pass", "End": true}}}));
    assert_eq!((err.state(), err.field()), (None, "StartAt"));
    let err = parse_error(&choice_machine(
        json!([{"Variable": "$.a", "IsNull": true, "Next": "Public"}]),
        Some("Nowhere"),
    ));
    assert_eq!((err.state(), err.field()), (Some("C"), "Default"));
    let err = parse_error(&choice_machine(
        json!([{"Variable": "$.a", "IsNull": true, "Next": "Elsewhere"}]),
        None,
    ));
    assert_eq!(err.field(), "Choices[0].Next");
    let err = parse_error(&one_task(
        json!({"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Gone"}]}),
    ));
    assert_eq!(err.field(), "Catch[0].Next");
}

#[test]
fn rejects_missing_start_at_and_bad_structure() {
    let err = parse_error(&json!({"States": {"A": {"Type": "Pass", "End": true}}}));
    assert_eq!(
        err,
        AslError::MissingField {
            state: None,
            field: "StartAt".into()
        }
    );
    assert!(matches!(
        StateMachine::parse("{not json", &HashMap::new()),
        Err(AslError::InvalidJson { .. })
    ));
    let err = parse_error(&json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}));
    assert_eq!((err.state(), err.field()), (Some("A"), "Next"));
    let err = parse_error(
        &json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A", "End": true}}}),
    );
    assert_eq!(err.field(), "Next");
    let err = parse_error(&json!({"StartAt": "A", "States": {"A": {"End": true}}}));
    assert_eq!(
        err,
        AslError::MissingField {
            state: Some("A".into()),
            field: "Type".into()
        }
    );
    let err = parse_error(
        &json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": true}}}),
    );
    assert_eq!(err.state(), Some("W"));
    let err = parse_error(&one_task(
        json!({"TimeoutSeconds": 5, "HeartbeatSeconds": 5}),
    ));
    assert_eq!(err.field(), "HeartbeatSeconds");
    let err = parse_error(
        &json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}}}),
    );
    assert_eq!(err.field(), "ErrorPath");
}

#[test]
fn rejects_jsonata_and_other_unsupported_fields() {
    let err = parse_error(
        &json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}),
    );
    assert!(
        matches!(&err, AslError::Unsupported { state: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("JSONPath"), "{err}");
    let err = parse_error(&one_pass(json!({"QueryLanguage": "JSONata"})));
    assert_eq!((err.state(), err.field()), (Some("P"), "QueryLanguage"));
    for field in [
        "Arguments",
        "Output",
        "Assign",
        "Credentials",
        "TimeoutSecondsPath",
        "HeartbeatSecondsPath",
    ] {
        let mut fields = serde_json::Map::new();
        fields.insert(field.to_string(), json!({}));
        let err = parse_error(&one_task(Value::Object(fields)));
        assert!(
            matches!(&err, AslError::Unsupported { .. }),
            "{field}: {err}"
        );
        assert_eq!(err.field(), field);
    }
    let err = parse_error(&choice_machine(
        json!([{"Condition": "{% $states.input.a %}", "Next": "Public"}]),
        None,
    ));
    assert!(matches!(&err, AslError::Unsupported { .. }), "{err}");
    assert_eq!(err.field(), "Choices[0].Condition");
}

#[test]
fn rejects_non_reference_paths_and_misplaced_states_all() {
    let err = parse_error(&one_task(json!({"InputPath": "$..a"})));
    assert!(matches!(&err, AslError::Unsupported { .. }), "{err}");
    assert_eq!(err.field(), "InputPath");
    let err = parse_error(&one_task(json!({"Parameters": {"x.$": "$.a[*]"}})));
    assert_eq!(err.field(), "Parameters.x.$");
    let err = parse_error(&one_task(json!({"ResultPath": "$$.Execution.Id"})));
    assert_eq!(err.field(), "ResultPath");
    let err = parse_error(&one_task(
        json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]}),
    ));
    assert_eq!(err.field(), "Retry[0].ErrorEquals");
    let err = parse_error(&choice_machine(
        json!([{"Variable": "$.a", "NumericEquals": "1", "Next": "Public"}]),
        None,
    ));
    assert_eq!(err.field(), "Choices[0].NumericEquals");
}

#[test]
fn accepts_comments_everywhere() {
    let definition = json!({"Comment": "c", "Version": "1.0", "QueryLanguage": "JSONPath", "StartAt": "T", "States": {
        "T": {"Type": "Task", "Comment": "c", "Resource": "r", "Next": "C",
              "Retry": [{"Comment": "c", "ErrorEquals": ["X"]}], "Catch": [{"Comment": "c", "ErrorEquals": ["X"], "Next": "C"}]},
        "C": {"Type": "Choice", "Comment": "c", "Choices": [{"Comment": "c", "Variable": "$.a", "IsPresent": true, "Next": "S"}], "Default": "S"},
        "S": {"Type": "Succeed", "Comment": "c"}}});
    machine(&definition);
}

// ---------------------------------------------------------------- AWS limits

/// The chunk loop of a run in one execution (the shape flow-run had before slices): start,
/// then fetch -> transform -> write per chunk while there is more, flush, finalize; a Catch on
/// every Task into a failure path.
fn chunk_loop() -> Value {
    let task = |resource: &str, next: &str, result_path: Value| {
        json!({"Type": "Task", "Resource": resource, "ResultPath": result_path, "Next": next,
               "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Finalize Failed Run"}]})
    };
    json!({"StartAt": "Start Run", "States": {
        "Start Run": task("start", "Fetch Chunk", json!("$")),
        "Fetch Chunk": {"Type": "Task", "Resource": "fetch", "Parameters": {"chunk.$": "$.page.next_chunk"},
                        "ResultPath": "$.page", "Next": "Transform Batch",
                        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Finalize Failed Run"}]},
        "Transform Batch": task("transform", "Write Output", json!("$.batch")),
        "Write Output": task("write", "More Data?", Value::Null),
        "More Data?": {"Type": "Choice", "Choices": [{"Variable": "$.page.has_more", "BooleanEquals": true, "Next": "Fetch Chunk"}], "Default": "Flush Output"},
        "Flush Output": task("write", "Finalize Run", Value::Null),
        "Finalize Run": {"Type": "Task", "Resource": "finalize", "End": true},
        "Finalize Failed Run": {"Type": "Task", "Resource": "finalize-failed", "Next": "Run Failed"},
        "Run Failed": {"Type": "Fail", "Error": "RunFailed"}}})
}

/// fetch answers `chunks` chunks (has_more until the last); everything else `{}`.
fn chunk_invoker(chunks: u64) -> FakeInvoker {
    FakeInvoker::new(move |resource, input, _| match resource {
        "start" => Ok(json!({"page": {"next_chunk": 0, "has_more": true}})),
        "fetch" => {
            let chunk = input["chunk"].as_u64().unwrap();
            Ok(json!({"next_chunk": chunk + 1, "has_more": chunk + 1 < chunks}))
        }
        _ => Ok(json!({})),
    })
}

#[tokio::test]
async fn history_events_are_counted_as_aws_writes_them() {
    // 17 events per chunk (3 Tasks × 5, a Choice × 2) and 17 around them: ExecutionStarted,
    // Start Run, Flush Output, Finalize Run (5 each), ExecutionSucceeded.
    let invoker = chunk_invoker(1_400);
    let (result, events) = machine(&chunk_loop())
        .execute_counted(json!({}), ctx(), &invoker, &NoopObserver)
        .await;
    result.expect("1,400 chunks fit in one execution");
    assert_eq!(events, 17 * 1_400 + 17);
}

#[tokio::test]
async fn a_long_chunk_loop_dies_at_25000_events_without_its_catch() {
    let invoker = chunk_invoker(1_600);
    let (result, events) = machine(&chunk_loop())
        .execute_counted(json!({}), ctx(), &invoker, &NoopObserver)
        .await;
    let failure = result.expect_err("1,600 chunks do not fit in 25,000 events");
    assert_eq!(failure.error, "States.Runtime", "{failure}");
    assert!(failure.cause.contains("25000"), "{failure}");
    // (25,000 - 6) / 17 = 1,470 chunks fit; the history ends in chunk 1,471.
    let fetches = invoker.calls().iter().filter(|(r, _)| r == "fetch").count();
    assert_eq!(fetches, 1_471);
    // States.Runtime skips Catch: the failure path never ran.
    assert!(invoker.calls().iter().all(|(r, _)| r != "finalize-failed"));
    assert!(events > 25_000);
}

#[tokio::test]
async fn payloads_over_256_kib_fail_the_execution_uncaught() {
    let big = "x".repeat(MAX_PAYLOAD_BYTES);
    let invoker = FakeInvoker::returning(json!({ "records": big }));
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:task", "End": true,
              "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
        "Caught": {"Type": "Succeed"}}});
    let failure = run(&definition, json!({}), &invoker).await.unwrap_err();
    assert_eq!(failure.error, "States.DataLimitExceeded", "{failure}");
    assert!(failure.cause.contains("262144"), "{failure}");
    assert_eq!(invoker.calls().len(), 1, "not retried");
    // Just under the limit passes (the result is a JSON object of the string).
    let fits = "x".repeat(MAX_PAYLOAD_BYTES - 100);
    let invoker = FakeInvoker::returning(json!({ "records": fits }));
    run(&definition, json!({}), &invoker).await.unwrap();
    // A too-large execution input fails at once.
    let failure = run(&one_pass(json!({})), json!({ "x": big }), &invoker)
        .await
        .unwrap_err();
    assert_eq!(failure.error, "States.DataLimitExceeded");
}

#[tokio::test]
async fn limits_can_be_lowered() {
    let m = machine(&chunk_loop()).with_limits(Limits {
        history_events: 100,
        payload_bytes: MAX_PAYLOAD_BYTES,
    });
    let invoker = chunk_invoker(10);
    let failure = m
        .execute(json!({}), ctx(), &invoker, &NoopObserver)
        .await
        .unwrap_err();
    assert_eq!(failure.error, "States.Runtime");
}

// ---------------------------------------------------------------- Map

/// A Map over `$.items` whose processor runs one Task "arn:item" on each item.
fn inline_map(fields: Value) -> Value {
    let mut state = json!({"Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {"StartAt": "Item", "States": {"Item": {"Type": "Task", "Resource": "arn:item", "End": true}}}});
    state
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    json!({"StartAt": "M", "States": {"M": state}})
}

#[tokio::test]
async fn inline_map_runs_each_item_with_item_selector_and_keeps_order() {
    let invoker = FakeInvoker::new(|_, input, _| Ok(json!({"got": input})));
    let definition = inline_map(json!({
        "ItemSelector": {"index.$": "$$.Map.Item.Index", "value.$": "$$.Map.Item.Value", "tag.$": "$.tag"},
        "ResultSelector": {"n.$": "States.ArrayLength($)", "all.$": "$"},
        "ResultPath": "$.result"}));
    let out = run(
        &definition,
        json!({"tag": "t", "items": ["a", "b", "c"]}),
        &invoker,
    )
    .await
    .unwrap();
    assert_eq!(out["result"]["n"], json!(3));
    assert_eq!(
        out["result"]["all"][2],
        json!({"got": {"index": 2, "value": "c", "tag": "t"}})
    );
    assert_eq!(out["tag"], json!("t"), "ResultPath keeps the input");
}

#[tokio::test(start_paused = true)]
async fn map_items_run_concurrently_up_to_max_concurrency() {
    let invoker = SlowInvoker {
        delay: Duration::from_secs(10),
    };
    let items: Vec<u32> = (0..8).collect();
    let started = Instant::now();
    run(
        &inline_map(json!({"MaxConcurrency": 2})),
        json!({"items": items}),
        &invoker,
    )
    .await
    .unwrap();
    assert_eq!(started.elapsed().as_secs(), 40, "8 items, 2 at a time");
    let started = Instant::now();
    run(&inline_map(json!({})), json!({"items": items}), &invoker)
        .await
        .unwrap();
    assert_eq!(started.elapsed().as_secs(), 10, "no limit: all at once");
}

#[tokio::test]
async fn an_inline_iteration_failure_is_the_maps_and_can_be_caught() {
    let invoker = FakeInvoker::new(|_, input, _| {
        if input == &json!(2) {
            Err(TaskFailure::new("Boom", "item 2"))
        } else {
            Ok(input.clone())
        }
    });
    let definition = json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemsPath": "$.items", "Next": "Done",
              "ItemProcessor": {"StartAt": "Item", "States": {"Item": {"Type": "Task", "Resource": "arn:item", "End": true}}},
              "Catch": [{"ErrorEquals": ["Boom"], "ResultPath": "$.error", "Next": "Done"}]},
        "Done": {"Type": "Succeed"}}});
    let out = run(&definition, json!({"items": [1, 2, 3]}), &invoker)
        .await
        .unwrap();
    assert_eq!(out["error"]["Error"], json!("Boom"));
}

/// Answers Tasks like [`FakeInvoker`] and reads Map items from a fixed list.
struct ReadingInvoker {
    inner: FakeInvoker,
    items: Value,
    reads: Mutex<Vec<Value>>,
}

#[async_trait::async_trait]
impl TaskInvoker for ReadingInvoker {
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskFailure> {
        self.inner.invoke(resource, input).await
    }
    async fn read_items(
        &self,
        resource: &str,
        parameters: Value,
        config: &Value,
    ) -> Result<Value, TaskFailure> {
        assert_eq!(resource, "arn:aws:states:::s3:getObject");
        assert_eq!(config["InputType"], json!("JSON"));
        self.reads.lock().unwrap().push(parameters);
        Ok(self.items.clone())
    }
}

/// A Distributed Map reading its items with an ItemReader; each child loops `$.n` times
/// through a Task and a Choice (7 events per turn) before it succeeds.
fn distributed_map(fields: Value) -> Value {
    let mut state = json!({"Type": "Map", "Next": "Done",
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                       "Parameters": {"Bucket": "b", "Key.$": "$.key"}},
        "ItemSelector": {"n.$": "$$.Map.Item.Value", "i": 0},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Turn", "States": {
                "Turn": {"Type": "Task", "Resource": "arn:turn", "ResultPath": "$.i", "Next": "Again?"},
                "Again?": {"Type": "Choice", "Choices": [{"Variable": "$.i", "NumericLessThanPath": "$.n", "Next": "Turn"}], "Default": "End"},
                "End": {"Type": "Succeed", "OutputPath": "$.i"}}},
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Done"}]});
    state
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    json!({"StartAt": "M", "States": {"M": state, "Done": {"Type": "Succeed"}}})
}

fn turns() -> FakeInvoker {
    FakeInvoker::new(|_, input, _| {
        let i = input["i"].as_u64().unwrap();
        if input["n"] == json!(13) {
            return Err(TaskFailure::new("Unlucky", "item 13 always fails"));
        }
        Ok(json!(i + 1))
    })
}

#[tokio::test]
async fn distributed_children_have_their_own_histories() {
    // Four children of 2,000 turns: 14,000+ events each, 56,000 together — more than one
    // execution may hold, fine as child executions.
    let invoker = ReadingInvoker {
        inner: turns(),
        items: json!([2000, 2000, 2000, 2000]),
        reads: Mutex::new(vec![]),
    };
    let definition = distributed_map(json!({"MaxConcurrency": 4, "ResultPath": "$.out"}));
    let (result, events) = machine(&definition)
        .execute_counted(
            json!({"key": "staging/f/r/slices/round-0000.json"}),
            ctx(),
            &invoker,
            &NoopObserver,
        )
        .await;
    let out = result.unwrap();
    assert_eq!(out["out"], json!([2000, 2000, 2000, 2000]));
    assert_eq!(
        invoker.reads.lock().unwrap().clone(),
        vec![json!({"Bucket": "b", "Key": "staging/f/r/slices/round-0000.json"})]
    );
    // The parent: ExecutionStarted, the Map (Entered, Started, MapRunStarted,
    // MapRunSucceeded, Succeeded, Exited), Done (2), ExecutionSucceeded.
    assert_eq!(events, 1 + 6 + 2 + 1);

    // The same children inline: one history, over the limit.
    let inline = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemSelector": {"n.$": "$$.Map.Item.Value", "i": 0},
        "ItemProcessor": definition["States"]["M"]["ItemProcessor"].clone()}}});
    let mut inline = inline;
    inline["States"]["M"]["ItemProcessor"]
        .as_object_mut()
        .unwrap()
        .remove("ProcessorConfig");
    let failure = run(
        &inline,
        json!({"items": [2000, 2000, 2000, 2000]}),
        &turns(),
    )
    .await
    .unwrap_err();
    assert_eq!(failure.error, "States.Runtime");

    // A child past 25,000 events fails on its own, and the Map fails with it.
    let invoker = ReadingInvoker {
        inner: turns(),
        items: json!([4000]),
        reads: Mutex::new(vec![]),
    };
    let out = machine(&distributed_map(json!({})))
        .execute(json!({"key": "k"}), ctx(), &invoker, &NoopObserver)
        .await
        .unwrap();
    assert_eq!(
        out["error"]["Error"],
        json!("States.ExceedToleratedFailureThreshold")
    );
    assert!(
        out["error"]["Cause"]
            .as_str()
            .unwrap()
            .contains("States.Runtime"),
        "{out}"
    );
}

#[tokio::test]
async fn distributed_map_tolerates_the_failures_it_is_told_to() {
    let items = json!([1, 13, 2, 3]);
    let reading = |items: &Value| ReadingInvoker {
        inner: turns(),
        items: items.clone(),
        reads: Mutex::new(vec![]),
    };
    // No tolerance: one failed child fails the Map (caught here), naming the child's error.
    let out = machine(&distributed_map(json!({})))
        .execute(json!({"key": "k"}), ctx(), &reading(&items), &NoopObserver)
        .await
        .unwrap();
    assert_eq!(
        out["error"]["Error"],
        json!("States.ExceedToleratedFailureThreshold")
    );
    assert!(
        out["error"]["Cause"].as_str().unwrap().contains("Unlucky"),
        "{out}"
    );
    // One tolerated failure: the Map succeeds, the failed child's result is null.
    let out = machine(&distributed_map(
        json!({"ToleratedFailureCount": 1, "ResultPath": "$.out"}),
    ))
    .execute(json!({"key": "k"}), ctx(), &reading(&items), &NoopObserver)
    .await
    .unwrap();
    assert_eq!(out["out"], json!([1, null, 2, 3]));
    // 25 % tolerated of four items: one failure passes, two do not.
    let two = json!([13, 1, 13, 2]);
    let out = machine(&distributed_map(json!({"ToleratedFailurePercentage": 25})))
        .execute(json!({"key": "k"}), ctx(), &reading(&two), &NoopObserver)
        .await
        .unwrap();
    assert_eq!(
        out["error"]["Error"],
        json!("States.ExceedToleratedFailureThreshold")
    );
    // MaxItems caps what the reader hands over.
    let mut capped = distributed_map(json!({"ResultPath": "$.out"}));
    capped["States"]["M"]["ItemReader"]["ReaderConfig"]["MaxItems"] = json!(2);
    let out = machine(&capped)
        .execute(
            json!({"key": "k"}),
            ctx(),
            &reading(&json!([1, 2, 3])),
            &NoopObserver,
        )
        .await
        .unwrap();
    assert_eq!(out["out"], json!([1, 2]));
}

#[test]
fn map_fields_are_checked_when_parsing() {
    let with = |fields: Value| {
        let mut d = distributed_map(json!({}));
        d["States"]["M"]
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        d
    };
    for (fields, field) in [
        (json!({"ResultWriter": {}}), "ResultWriter"),
        (json!({"ItemBatcher": {}}), "ItemBatcher"),
        (json!({"Iterator": {}}), "Iterator"),
        (json!({"ItemsPath": "$.items"}), "ItemsPath"),
        (
            json!({"ToleratedFailurePercentage": 101}),
            "ToleratedFailurePercentage",
        ),
        (
            json!({"MaxConcurrency": 2, "MaxConcurrencyPath": "$.n"}),
            "MaxConcurrencyPath",
        ),
        (json!({"Label": "a b"}), "Label"),
    ] {
        let err = parse_error(&with(fields));
        assert_eq!(err.state(), Some("M"), "{err}");
        assert_eq!(err.field(), field, "{err}");
    }
    // An inline Map has no ItemReader, and a DISTRIBUTED one needs an ExecutionType.
    let err = parse_error(&inline_map(
        json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject"}}),
    ));
    assert_eq!(err.field(), "ItemReader");
    let mut d = distributed_map(json!({}));
    d["States"]["M"]["ItemProcessor"]["ProcessorConfig"]
        .as_object_mut()
        .unwrap()
        .remove("ExecutionType");
    assert_eq!(
        parse_error(&d).field(),
        "ItemProcessor.ProcessorConfig.ExecutionType"
    );
    // A processor's states are checked like a machine's, and cannot leave the processor.
    let mut d = distributed_map(json!({}));
    d["States"]["M"]["ItemProcessor"]["States"]["Again?"]["Default"] = json!("Done");
    let err = parse_error(&d);
    assert!(matches!(err, AslError::MissingTarget { .. }), "{err}");
}
