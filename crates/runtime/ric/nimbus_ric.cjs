// nimbus_ric.cjs - Nimbus's built-in Lambda runtime interface client (RIC) for Node.js functions.
//
// Embedded in the nimbus binary and run as `node nimbus_ric.cjs` with the function's code
// directory as cwd. It speaks the Lambda Runtime API 2018-06-01 at $AWS_LAMBDA_RUNTIME_API over
// one keep-alive connection, loads `_HANDLER` (path/module.handler) as CommonJS or ES module, and
// calls it per invocation the way AWS's Node runtime does: async handlers, callback handlers
// (with callbackWaitsForEmptyEventLoop), context.done/succeed/fail, AWS's context fields and
// error types/shape ({errorType, errorMessage, trace}, plus stackTrace). Built-ins only; Node 18+.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const url = require('url');
const util = require('util');

const BASE = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';

// ---- Runtime API client: one keep-alive socket, Content-Length bodies, one retry on a dropped socket.
const apiAddr = process.env.AWS_LAMBDA_RUNTIME_API || '';
const apiHost = apiAddr.slice(0, apiAddr.lastIndexOf(':')).replace(/^\[|\]$/g, '');
const apiPort = Number(apiAddr.slice(apiAddr.lastIndexOf(':') + 1));
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, p, body, headers, retried) {
  return new Promise((resolve, reject) => {
    const h = Object.assign({}, headers);
    if (body !== undefined) h['Content-Length'] = Buffer.byteLength(body);
    const req = http.request({ host: apiHost, port: apiPort, method, path: BASE + p, headers: h, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', (e) => (retried ? reject(e) : resolve(request(method, p, body, headers, true))));
    req.end(body);
  });
}

// The Runtime API is gone (server stopped or dropped this instance): leave quietly.
const apiGone = () => process.exit(1);

// ---- Errors, named and shaped like AWS's.
function runtimeError(name) {
  const C = class extends Error {};
  C.prototype.name = name;
  return C;
}
const ImportModuleError = runtimeError('Runtime.ImportModuleError');
const HandlerNotFound = runtimeError('Runtime.HandlerNotFound');
const MalformedHandlerName = runtimeError('Runtime.MalformedHandlerName');
const UserCodeSyntaxError = runtimeError('Runtime.UserCodeSyntaxError');
const UnhandledPromiseRejection = runtimeError('Runtime.UnhandledPromiseRejection');
const MarshalError = runtimeError('Runtime.MarshalError');
const NodeJsExit = runtimeError('Runtime.NodeJsExit');

function toRapidResponse(err) {
  try {
    const errorLike = err && typeof err.name === 'string' && typeof err.message === 'string' && typeof err.stack === 'string';
    if (util.types.isNativeError(err) || errorLike) {
      const trace = typeof err.stack === 'string' ? err.stack.split('\n') : [];
      return { errorType: err.name || 'Error', errorMessage: err.message, trace, stackTrace: trace };
    }
    // A thrown/callback'd non-Error value: AWS reports its typeof, e.g. errorType "string".
    return { errorType: typeof err, errorMessage: String(err), trace: [], stackTrace: [] };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      trace: [],
      stackTrace: [],
    };
  }
}

function logError(requestId, label, err) {
  const r = toRapidResponse(err);
  const json = JSON.stringify({ errorType: r.errorType, errorMessage: r.errorMessage, stack: r.trace });
  process.stderr.write(`${new Date().toISOString()}\t${requestId}\tERROR\t${label} \t${json}\n`);
}

function postError(p, err) {
  const response = toRapidResponse(err);
  const errorType = String(response.errorType).replace(/[^\x20-\x7e]/g, '?'); // keep the header valid
  return request('POST', p, JSON.stringify(response), { 'Content-Type': 'application/json', [ERROR_TYPE_HEADER]: errorType });
}

// ---- Loading the handler, as AWS's UserFunction.load does.
function hasTypeModule(folder) {
  // Nearest package.json decides; a node_modules boundary or the root means "not module".
  for (;;) {
    if (folder.endsWith('/node_modules')) return false;
    const pj = path.join(folder, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
      } catch (_) {
        return false;
      }
    }
    const parent = path.resolve(folder, '..');
    if (parent === folder) return false;
    folder = parent;
  }
}

async function loadModule(appRoot, moduleRoot, mod) {
  const base = path.resolve(appRoot, moduleRoot, mod);
  const importFile = (f) => import(url.pathToFileURL(f).href);
  if (fs.existsSync(base)) return require(base); // extensionless file (or directory)
  const esm = hasTypeModule(path.dirname(base));
  if (fs.existsSync(base + '.js')) return esm ? importFile(base + '.js') : require(base + '.js');
  if (fs.existsSync(base + '.mjs')) return importFile(base + '.mjs');
  if (fs.existsSync(base + '.cjs')) return require(base + '.cjs');
  // Finally the node resolution algorithm (e.g. a package in node_modules).
  return require(require.resolve(mod, { paths: [appRoot, moduleRoot] }));
}

async function loadHandler(appRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const handlerString = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.indexOf(handlerString));
  const match = handlerString.match(/^([^.]*)\.(.*)$/); // module = up to the first dot
  if (!match) throw new MalformedHandlerName('Bad handler');
  let app;
  try {
    app = await loadModule(appRoot, moduleRoot, match[1]);
  } catch (e) {
    if (e instanceof SyntaxError) {
      const err = new UserCodeSyntaxError(String(e));
      err.stack = e.stack;
      throw err;
    }
    if (e && e.code === 'MODULE_NOT_FOUND') throw new ImportModuleError(String(e));
    throw e;
  }
  const fn = match[2].split('.').reduce((obj, key) => obj && obj[key], app);
  if (!fn) throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  if (typeof fn !== 'function') throw new HandlerNotFound(`${fullHandler} is not a function`);
  return fn;
}

// ---- Process-level hooks: unexpected errors fail the current invocation (or init), then exit.
let currentRequestId; // undefined during init
let onBeforeExit = null; // what to do when the event loop drains (see callbackWaitsForEmptyEventLoop)

function failAndExit(label, err, code) {
  logError(currentRequestId, label, err);
  const p = currentRequestId === undefined ? '/init/error' : `/invocation/${encodeURIComponent(currentRequestId)}/error`;
  postError(p, err).then(() => process.exit(code), () => process.exit(code));
}
process.on('uncaughtException', (err) => failAndExit('Uncaught Exception', err, 129));
process.on('unhandledRejection', (reason) => {
  const err = new UnhandledPromiseRejection(String(reason));
  err.reason = reason;
  failAndExit('Unhandled Promise Rejection', err, 128);
});
process.on('beforeExit', () => {
  const hook = onBeforeExit;
  onBeforeExit = null;
  if (hook) hook();
});

// ---- The invocation loop.
function parseJsonHeader(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (e) {
    throw new Error(`Cannot parse ${name} as json: ${e.toString()}`);
  }
}

function parseEvent(body, contentType) {
  const type = (contentType || 'application/json').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') return body;
  return body.trim() === '' ? null : JSON.parse(body);
}

async function nextInvocation(handler) {
  let res;
  try {
    res = await request('GET', '/invocation/next');
  } catch (_) {
    return apiGone();
  }
  if (res.status !== 200) return apiGone();
  invoke(handler, res);
}

function invoke(handler, res) {
  const h = res.headers; // Node lower-cases header names
  const id = h['lambda-runtime-aws-request-id'] || '';
  const deadline = Number(h['lambda-runtime-deadline-ms'] || 0);
  currentRequestId = id;
  if (h['lambda-runtime-trace-id']) process.env._X_AMZN_TRACE_ID = h['lambda-runtime-trace-id'];
  else delete process.env._X_AMZN_TRACE_ID;

  const scheduleNext = () => setImmediate(() => nextInvocation(handler));
  const idPath = `/invocation/${encodeURIComponent(id)}`;
  const sendError = (err) => {
    logError(id, 'Invoke Error', err);
    postError(`${idPath}/error`, err).then(scheduleNext, apiGone);
  };
  const sendResult = (result) => {
    let body;
    try {
      body = JSON.stringify(result === undefined ? null : result);
    } catch (e) {
      return sendError(new MarshalError(`Unable to marshal response: ${e.message}`));
    }
    if (body === undefined) body = 'null'; // e.g. a function
    request('POST', `${idPath}/response`, body, { 'Content-Type': 'application/json' }).then(scheduleNext, apiGone);
  };

  // Only the first of callback/done/succeed/fail/returned value counts, as on AWS.
  let finished = false;
  let waitForEmptyEventLoop = true;
  const done = (err, result) => {
    if (finished) return;
    finished = true;
    onBeforeExit = null;
    if (err !== undefined && err !== null) sendError(err);
    else sendResult(result);
  };
  const callback = (err, result) => {
    if (finished) return;
    if ((err !== undefined && err !== null) || !waitForEmptyEventLoop) return done(err, result);
    finished = true; // respond once the event loop has drained
    onBeforeExit = () => setImmediate(() => sendResult(result));
  };
  const fail = (err) => done(err === undefined || err === null ? 'handled' : err);

  const isAsync = handler.constructor && handler.constructor.name === 'AsyncFunction';
  // If the loop drains with no answer: an async handler's promise can never settle now
  // (Runtime.NodeJsExit); a sync/callback handler that never called back answers null.
  onBeforeExit = () => {
    if (finished) return;
    if (isAsync) done(new NodeJsExit('Error: Runtime exited without providing a reason'));
    else done(null, null);
  };

  try {
    const context = {
      get callbackWaitsForEmptyEventLoop() {
        return waitForEmptyEventLoop;
      },
      set callbackWaitsForEmptyEventLoop(value) {
        waitForEmptyEventLoop = value;
      },
      succeed: (result) => done(null, result),
      fail,
      done,
      functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
      memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
      clientContext: parseJsonHeader(h['lambda-runtime-client-context'], 'ClientContext'),
      identity: parseJsonHeader(h['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
      invokedFunctionArn: h['lambda-runtime-invoked-function-arn'],
      awsRequestId: id,
      getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
    };
    const result = handler(parseEvent(res.body, h['content-type']), context, callback);
    if (result && typeof result.then === 'function') {
      result.then((value) => done(null, value), fail);
    } else if (result !== undefined && handler.length < 3) {
      done(null, result); // a plain sync handler's return value
    }
  } catch (err) {
    callback(err);
  }
}

async function main() {
  let handler;
  try {
    handler = await loadHandler(process.env.LAMBDA_TASK_ROOT || process.cwd(), process.env._HANDLER || '');
  } catch (err) {
    return failAndExit('Uncaught Exception', err, 129);
  }
  nextInvocation(handler);
}

main();
