// ferry's deployed-stack harness, node side: the AWS Step Functions service as the deployed
// stack sees it, run by an interpreter that is not ferry's own.
//
// * Step Functions API (AWS JSON 1.0, `X-Amz-Target: AWSStepFunctions.<Op>`): CreateStateMachine,
//   DescribeStateMachine, StartExecution, DescribeExecution, StopExecution, ListExecutions,
//   GetExecutionHistory. Executions are run by `aws-local-stepfunctions` (npm), an independent
//   implementation of the Amazon States Language, on the definition the harness created from
//   template.yaml with its DefinitionSubstitutions applied.
// * Task states invoke Lambda through the Lambda Invoke API (`@aws-sdk/client-lambda`) at
//   LAMBDA_ENDPOINT, signed with the state machine role's credentials, so the harness can hold
//   each invoke against that role.
// * `Harness.Authorize`: one IAM decision by `@cloud-copilot/iam-simulate`, a published IAM
//   policy simulator (identity policies, resource policy, condition keys).
// * Terminal executions are posted as EventBridge "Step Functions Execution Status Change"
//   events to EVENTS_URL (when set), as AWS sends them to the default bus.
//
// Where aws-local-stepfunctions differs from AWS's documented behaviour, it is worked around
// here, and only here; every workaround is marked "DEVIATION". ferry's definition is never
// changed to suit the interpreter.
//
// Usage: node stack-server.mjs   (env: PORT=0, LAMBDA_ENDPOINT, SFN_ACCESS_KEY_ID,
// SFN_SECRET_ACCESS_KEY, AWS_REGION, ACCOUNT_ID, EVENTS_URL, RETRY_INTERVAL_MS). Prints
// `listening <port>` on stdout once ready.

import http from 'node:http';
import { randomUUID, createHash, createHmac } from 'node:crypto';

// DEVIATION (Node.js): aws-local-stepfunctions 3 calls Promise.withResolvers (Node >= 22); the
// machine has Node 20. Same semantics, per the TC39 proposal.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const { StateMachine, ExecutionAbortedError } = await import('aws-local-stepfunctions');
const { LambdaClient, InvokeCommand } = await import('@aws-sdk/client-lambda');
const { runSimulation } = await import('@cloud-copilot/iam-simulate');
// Installed with @aws-sdk/client-lambda (its request signer).
const { SignatureV4 } = await import('@smithy/signature-v4');

const REGION = process.env.AWS_REGION || 'us-east-1';
const ACCOUNT = process.env.ACCOUNT_ID || '123456789012';
const LAMBDA_ENDPOINT = process.env.LAMBDA_ENDPOINT;
const EVENTS_URL = process.env.EVENTS_URL || '';
const RETRY_INTERVAL_MS = process.env.RETRY_INTERVAL_MS ? Number(process.env.RETRY_INTERVAL_MS) : undefined;
const S3_ENDPOINT = process.env.S3_ENDPOINT || '';

const lambda = LAMBDA_ENDPOINT
  ? new LambdaClient({
      region: REGION,
      endpoint: LAMBDA_ENDPOINT,
      credentials: {
        accessKeyId: process.env.SFN_ACCESS_KEY_ID || 'ASIASTATESHARNESS',
        secretAccessKey: process.env.SFN_SECRET_ACCESS_KEY || 'harness',
      },
      maxAttempts: 1,
    })
  : null;

/** stateMachineArn -> { name, arn, definition, roleArn, createdAt } */
const machines = new Map();
/** executionArn -> execution record */
const executions = new Map();

class ApiError extends Error {
  constructor(type, message, status = 400) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

function epoch(ms) {
  return ms / 1000;
}

// ------------------------------------------------------------------------------------ Lambda

/** Task states whose Resource is a Lambda function ARN (or a name): every Task of flow-run. */
function taskStates(definition, out = {}) {
  for (const [name, st] of Object.entries(definition.States || {})) {
    if (st.Type === 'Task') out[name] = st.Resource;
    if (st.Type === 'Parallel') for (const b of st.Branches || []) taskStates(b, out);
    if (st.Type === 'Map') taskStates(st.ItemProcessor || st.Iterator || {}, out);
  }
  return out;
}

function stateNamesWithRetry(definition, out = []) {
  for (const [name, st] of Object.entries(definition.States || {})) {
    if (Array.isArray(st.Retry) && st.Retry.length) out.push(name);
    if (st.Type === 'Parallel') for (const b of st.Branches || []) stateNamesWithRetry(b, out);
    if (st.Type === 'Map') stateNamesWithRetry(st.ItemProcessor || st.Iterator || {}, out);
  }
  return out;
}

class TaskError extends Error {
  constructor(name, cause) {
    super(cause);
    this.name = name;
  }
}

// DEVIATION (error shape): aws-local-stepfunctions invokes Lambda itself and reports a function
// error with Cause = "<errorType>: <errorMessage>". AWS reports the function's error payload as
// the Cause, a JSON string {"errorType": ..., "errorMessage": ...}, and names Lambda service
// failures "Lambda.<Exception>". Every Task is therefore bound to this invoker, which calls the
// same Lambda Invoke API and fails the way AWS does.
async function invokeLambda(resource, input) {
  if (!lambda) throw new TaskError('States.TaskFailed', 'LAMBDA_ENDPOINT is not set');
  let res;
  try {
    res = await lambda.send(
      new InvokeCommand({ FunctionName: resource, Payload: Buffer.from(JSON.stringify(input)) }),
    );
  } catch (e) {
    const name = e?.name && e.name !== 'Error' ? e.name : 'AWSLambdaException';
    throw new TaskError(`Lambda.${name}`, String(e?.message ?? e));
  }
  const text = res.Payload ? Buffer.from(res.Payload).toString('utf8') : 'null';
  if (res.FunctionError) {
    let payload;
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
    const type = payload && typeof payload.errorType === 'string' ? payload.errorType : 'Lambda.Unknown';
    throw new TaskError(type, text);
  }
  return JSON.parse(text);
}

// DEVIATION (ResultPath "$"): the ASL specification says `"ResultPath": "$"` replaces the
// state's whole input with its result, which is also what an absent ResultPath does.
// aws-local-stepfunctions 3.0.0 instead stores the result under a key named "$". The definition
// given to the interpreter gets the equivalent form (the field left out); the definition
// DescribeStateMachine returns is the one the harness was given.
function forInterpreter(definition) {
  const copy = JSON.parse(JSON.stringify(definition));
  const walk = (states) => {
    for (const st of Object.values(states || {})) {
      if (st.ResultPath === '$') delete st.ResultPath;
      for (const c of st.Catch || []) if (c.ResultPath === '$') delete c.ResultPath;
      for (const b of st.Branches || []) walk(b.States);
      const proc = st.ItemProcessor || st.Iterator;
      if (proc) walk(proc.States);
    }
  };
  walk(copy.States);
  withItemReaders(copy.States);
  return copy;
}

// DEVIATION (Distributed Map ItemReader): aws-local-stepfunctions 3.0.0 runs every Map inline
// over an array in the state (ItemsPath); it has no ItemReader, no child executions and no
// tolerated-failure thresholds. The definition given to the interpreter therefore reads the
// items itself: a Map state N with an ItemReader becomes a Task state N, whose handler does the
// reader's `arn:aws:states:::s3:getObject` (ReaderConfig.InputType JSON) as the state machine's
// role — signed, through the IAM gate, so the role's s3:GetObject grant is checked — with the
// reader's Parameters, into $.__harness_items, then the Map (renamed "N (items)") over
// ItemsPath $.__harness_items. Each item still runs the ItemProcessor with the ItemSelector,
// MaxConcurrencyPath and the Map's Catch; what is NOT exercised here: child executions with their
// own history and $$.Execution (the processor does not read them), and
// ToleratedFailureCount (0 in flow-run: a failed item fails the Map here too, with the item's
// own error instead of States.ExceedToleratedFailureThreshold; finalize accepts both).
const READER_PREFIX = 'arn:aws:lambda:us-east-1:000000000000:function:harness-item-reader-';

class Sha256 {
  constructor(secret) {
    this.hash = secret ? createHmac('sha256', secret) : createHash('sha256');
  }
  update(data) {
    this.hash.update(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }
  async digest() {
    return new Uint8Array(this.hash.digest());
  }
}

const s3Signer = new SignatureV4({
  service: 's3',
  region: REGION,
  sha256: Sha256,
  credentials: {
    accessKeyId: process.env.SFN_ACCESS_KEY_ID || 'ASIASTATESHARNESS',
    secretAccessKey: process.env.SFN_SECRET_ACCESS_KEY || 'harness',
  },
});

/** The ItemReader's s3:getObject: the JSON array in s3://Bucket/Key. Retries 5xx (the gate may
 * inject transient failures; Step Functions retries its own reads). */
async function readItems(params) {
  if (!S3_ENDPOINT) throw new TaskError('States.ItemReaderFailed', 'S3_ENDPOINT is not set');
  const { Bucket, Key } = params || {};
  const url = new URL(`${S3_ENDPOINT}/${Bucket}/${Key.split('/').map(encodeURIComponent).join('/')}`);
  for (let attempt = 0; ; attempt++) {
    const req = await s3Signer.sign({
      method: 'GET',
      protocol: url.protocol,
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
      headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    });
    const res = await fetch(url, { headers: req.headers });
    const text = await res.text();
    if (res.ok) {
      const items = JSON.parse(text);
      if (!Array.isArray(items)) throw new TaskError('States.ItemReaderFailed', `s3://${Bucket}/${Key} is not a JSON array`);
      return items;
    }
    if (res.status >= 500 && attempt < 5) continue;
    throw new TaskError('States.ItemReaderFailed', `s3:GetObject s3://${Bucket}/${Key}: ${res.status} ${text.slice(0, 300)}`);
  }
}

function withItemReaders(states) {
  for (const [name, st] of Object.entries({ ...states })) {
    const proc = st.ItemProcessor || st.Iterator;
    if (proc) withItemReaders(proc.States);
    if (st.Type !== 'Map' || !st.ItemReader) continue;
    const mapName = `${name} (items)`;
    const reader = {
      Type: 'Task',
      Resource: READER_PREFIX + name.replace(/[^A-Za-z0-9_-]/g, '-'),
      Parameters: st.ItemReader.Parameters || {},
      ResultPath: '$.__harness_items',
      Next: mapName,
    };
    if (st.Catch) reader.Catch = st.Catch;
    const map = { ...st, ItemsPath: '$.__harness_items' };
    delete map.ItemReader;
    delete map.Label;
    delete map.ToleratedFailureCount;
    delete map.ToleratedFailurePercentage;
    if (map.ItemProcessor) {
      map.ItemProcessor = { ...map.ItemProcessor };
      delete map.ItemProcessor.ProcessorConfig;
    }
    states[name] = reader;
    states[mapName] = map;
  }
}

// ------------------------------------------------------------------------------------ executions

function describe(ex) {
  const out = {
    executionArn: ex.arn,
    stateMachineArn: ex.machine.arn,
    name: ex.name,
    status: ex.status,
    startDate: epoch(ex.startedAt),
    input: ex.input,
  };
  if (ex.stoppedAt) out.stopDate = epoch(ex.stoppedAt);
  if (ex.output !== undefined) out.output = ex.output;
  if (ex.error !== undefined) out.error = ex.error;
  if (ex.cause !== undefined) out.cause = ex.cause;
  return out;
}

async function postStatusChange(ex) {
  if (!EVENTS_URL) return;
  const event = {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Step Functions Execution Status Change',
    source: 'aws.states',
    account: ACCOUNT,
    time: new Date(ex.stoppedAt ?? Date.now()).toISOString(),
    region: REGION,
    resources: [ex.arn],
    detail: {
      executionArn: ex.arn,
      stateMachineArn: ex.machine.arn,
      name: ex.name,
      status: ex.status,
      startDate: ex.startedAt,
      stopDate: ex.stoppedAt ?? null,
      input: ex.input,
      output: ex.output ?? null,
      error: ex.error ?? null,
      cause: ex.cause ?? null,
    },
  };
  try {
    await fetch(EVENTS_URL, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(event) });
  } catch (e) {
    console.error(`status change event for ${ex.arn} not delivered: ${e}`);
  }
}

function finish(ex, fields) {
  if (ex.status !== 'RUNNING') return;
  Object.assign(ex, fields, { stoppedAt: Date.now() });
  for (const w of ex.waiters.splice(0)) w();
  postStatusChange(ex);
}

async function collectEvents(ex, logs) {
  try {
    for await (const ev of logs) ex.history.push(ev);
  } catch (e) {
    ex.history.push({ type: 'HarnessEventLogError', timestamp: Date.now(), message: String(e) });
  }
}

function start(machine, name, input) {
  const arn = `arn:aws:states:${REGION}:${ACCOUNT}:execution:${machine.name}:${name}`;
  const existing = executions.get(arn);
  if (existing) {
    // StartExecution is idempotent for a running execution with the same name and input.
    if (existing.input === input && existing.status === 'RUNNING') return existing;
    throw new ApiError('ExecutionAlreadyExists', `Execution Already Exists: '${arn}'`);
  }
  let parsed;
  try {
    parsed = JSON.parse(input);
  } catch (e) {
    throw new ApiError('InvalidExecutionInput', `Invalid State Machine Execution Input: '${e.message}'`);
  }
  const startedAt = Date.now();
  const ex = {
    arn,
    name,
    machine,
    input,
    status: 'RUNNING',
    startedAt,
    history: [],
    waiters: [],
  };
  executions.set(arn, ex);
  const handlers = {};
  for (const [state, resource] of Object.entries(taskStates(machine.definition))) {
    handlers[state] = (taskInput) => invokeLambda(resource, taskInput);
  }
  for (const [state, resource] of Object.entries(taskStates(forInterpreter(machine.definition)))) {
    if (resource.startsWith(READER_PREFIX)) handlers[state] = (params) => readItems(params);
  }
  const retryIntervalOverrides = {};
  if (RETRY_INTERVAL_MS !== undefined) {
    // Time compression, not a semantic change: retries still happen in AWS's order and number.
    for (const s of stateNamesWithRetry(machine.definition)) retryIntervalOverrides[s] = RETRY_INTERVAL_MS;
  }
  const run = machine.sm.run(parsed, {
    overrides: { taskResourceLocalHandlers: handlers, retryIntervalOverrides },
    context: {
      Execution: {
        Id: arn,
        Input: parsed,
        Name: name,
        RoleArn: machine.roleArn,
        StartTime: new Date(startedAt).toISOString(),
        RedriveCount: 0,
      },
      StateMachine: { Id: machine.arn, Name: machine.name },
    },
  });
  ex.abort = run.abort;
  collectEvents(ex, run.eventLogs);
  run.result.then(
    (out) => finish(ex, { status: 'SUCCEEDED', output: JSON.stringify(out ?? null) }),
    (err) => {
      if (err instanceof ExecutionAbortedError || err?.name === 'ExecutionAbortedError') {
        finish(ex, { status: 'ABORTED', error: ex.stopError, cause: ex.stopCause });
      } else if (err?.name === 'ExecutionTimeoutError') {
        finish(ex, { status: 'TIMED_OUT', error: 'States.Timeout', cause: String(err.message ?? '') });
      } else {
        // The Fail state's Error/Cause, or the uncaught error of a state. The interpreter wraps
        // it in an ExecutionError whose `cause` is the original error.
        const inner = err?.name === 'ExecutionError' && err.cause instanceof Error ? err.cause : err;
        const error = inner?.name ?? 'States.Runtime';
        const cause = String(inner?.message ?? inner);
        finish(ex, { status: 'FAILED', error, cause });
      }
    },
  );
  return ex;
}

// ------------------------------------------------------------------------------------ API

function machineFor(arn) {
  const m = machines.get(arn);
  if (!m) throw new ApiError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
  return m;
}

function executionFor(arn) {
  const ex = executions.get(arn);
  if (!ex) throw new ApiError('ExecutionDoesNotExist', `Execution Does Not Exist: '${arn}'`);
  return ex;
}

const ops = {
  async CreateStateMachine(req) {
    const name = req.name;
    const arn = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${name}`;
    let definition;
    try {
      definition = JSON.parse(req.definition);
    } catch (e) {
      throw new ApiError('InvalidDefinition', `Invalid State Machine Definition: '${e.message}'`);
    }
    let sm;
    try {
      sm = new StateMachine(forInterpreter(definition), { validationOptions: { checkArn: true, checkPaths: true } });
    } catch (e) {
      throw new ApiError('InvalidDefinition', `Invalid State Machine Definition: '${e.message}'`);
    }
    const createdAt = Date.now();
    machines.set(arn, { name, arn, definition, sm, roleArn: req.roleArn, createdAt, type: req.type ?? 'STANDARD' });
    return { stateMachineArn: arn, creationDate: epoch(createdAt) };
  },
  async DescribeStateMachine(req) {
    const m = machineFor(req.stateMachineArn);
    return {
      stateMachineArn: m.arn,
      name: m.name,
      status: 'ACTIVE',
      definition: JSON.stringify(m.definition),
      roleArn: m.roleArn,
      type: m.type,
      creationDate: epoch(m.createdAt),
    };
  },
  async StartExecution(req) {
    const m = machineFor(req.stateMachineArn);
    const ex = start(m, req.name || randomUUID(), req.input ?? '{}');
    return { executionArn: ex.arn, startDate: epoch(ex.startedAt) };
  },
  async DescribeExecution(req) {
    return describe(executionFor(req.executionArn));
  },
  async StopExecution(req) {
    const ex = executionFor(req.executionArn);
    if (ex.status === 'RUNNING') {
      ex.stopError = req.error;
      ex.stopCause = req.cause;
      ex.abort();
      // aws-local-stepfunctions settles the result asynchronously; the API answers once stopped.
      await new Promise((r) => (ex.status === 'RUNNING' ? ex.waiters.push(r) : r()));
    }
    return { stopDate: epoch(ex.stoppedAt ?? Date.now()) };
  },
  async ListExecutions(req) {
    const m = machineFor(req.stateMachineArn);
    const list = [...executions.values()]
      .filter((e) => e.machine === m && (!req.statusFilter || e.status === req.statusFilter))
      .sort((a, b) => b.startedAt - a.startedAt)
      .map((e) => {
        const d = describe(e);
        delete d.input;
        delete d.output;
        return d;
      });
    return { executions: list };
  },
  async GetExecutionHistory(req) {
    const ex = executionFor(req.executionArn);
    return { events: ex.history.map((e, i) => ({ id: i + 1, timestamp: epoch(e.timestamp ?? Date.now()), ...e })) };
  },
  // Harness only: wait until an execution is no longer RUNNING (long poll), then describe it.
  async WaitExecution(req) {
    const ex = executionFor(req.executionArn);
    if (ex.status === 'RUNNING') {
      await new Promise((resolve) => {
        ex.waiters.push(resolve);
        setTimeout(resolve, (req.timeoutSeconds ?? 60) * 1000);
      });
    }
    return describe(ex);
  },
  // Harness only: one IAM decision. { principal, action, resource, context, identityPolicies:
  // [{name, policy}], resourcePolicy? } -> { decision: Allowed | ImplicitlyDenied | ExplicitlyDenied }
  async Authorize(req) {
    const result = await runSimulation(
      {
        request: {
          principal: req.principal,
          action: req.action,
          resource: { resource: req.resource, accountId: req.resourceAccount ?? ACCOUNT },
          contextVariables: req.context ?? {},
        },
        identityPolicies: req.identityPolicies ?? [],
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        resourcePolicy: req.resourcePolicy ?? undefined,
      },
      {},
    );
    if (result.errors) {
      return { decision: 'Error', errors: result.errors };
    }
    return { decision: result.overallResult };
  },
};

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const target = String(req.headers['x-amz-target'] ?? '');
  const op = target.split('.').pop();
  res.setHeader('content-type', 'application/x-amz-json-1.0');
  try {
    const fn = ops[op];
    if (!fn) throw new ApiError('UnknownOperationException', `operation ${target} is not served by the harness`);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
    const out = await fn(body);
    res.writeHead(200);
    res.end(JSON.stringify(out));
  } catch (e) {
    const type = e instanceof ApiError ? e.type : 'InternalFailure';
    res.writeHead(e instanceof ApiError ? e.status : 500);
    res.end(JSON.stringify({ __type: type, message: String(e.message ?? e) }));
  }
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
