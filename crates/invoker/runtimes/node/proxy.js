'use strict';
// Brisk runtime proxy for Node.js actions (kind nodejs:20).
//
// Speaks the action container contract described in docs/runtime-protocol.md:
// POST /init loads the user's code once, POST /run calls its entry point. It
// serves the listening socket it is given as file descriptor BRISK_LISTEN_FD
// (socket activation: the invoker's stdin), or for manual testing a Unix socket
// it binds at BRISK_SOCKET, or 127.0.0.1:BRISK_PORT. Every line the action
// writes to stdout/stderr during an activation is tagged
// "\x01<activation id>\x02" so the invoker can attribute it even when runs
// overlap, and every run ends with a tagged sentinel line on both streams,
// written before the HTTP response.
//
// Standard library only.

const net = require('net');
const fs = require('fs');
const os = require('os');
const path = require('path');
const Module = require('module');
const { AsyncLocalStorage } = require('async_hooks');
const { StringDecoder } = require('string_decoder');
const { pathToFileURL } = require('url');

// zlib only unpacks a base64 zip sent to /init (rare; the invoker unpacks zips itself): loaded
// on first use, since its bindings cost every idle container ~0.6 MB.
let zlibModule = null;
const zlib = () => zlibModule || (zlibModule = require('zlib'));

// Modules every action may require without bundling them (as OpenWhisk's Node.js runtime
// image preinstalls them, e.g. `openwhisk`, which openwhisk-composer's conductors use):
// `node_modules` next to this file, when the platform has installed it.
// `env` must be the process's real environment: the module loader reads NODE_PATH from it.
function shareModules(env) {
  const shared = path.join(__dirname, 'node_modules');
  if (fs.existsSync(shared)) {
    env.NODE_PATH = [shared, env.NODE_PATH].filter(Boolean).join(path.delimiter);
    Module._initPaths();
  }
}
shareModules(process.env);

const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX';
const NOT_A_DICTIONARY = 'The action did not return a dictionary or array.';

// ---------------------------------------------------------------------------
// Log tagging
// ---------------------------------------------------------------------------

// The store of the activation (or init) whose code is executing. Async work the
// action starts inherits it, so concurrent runs tag their own lines.
const als = new AsyncLocalStorage();

// The log context of the code that is running. With one run at a time (the default) a plain
// variable is exact and free. AsyncLocalStorage is built on async_hooks in Node.js 20 and, once
// used, costs something on every promise the action creates, so it is used only for actions
// that allow concurrent runs.
let currentCtx;
let allowConcurrent = process.env.__OW_ALLOW_CONCURRENT === 'true';
function logContext() {
  return allowConcurrent ? als.getStore() : currentCtx;
}
function withLogContext(ctx, fn, ...args) {
  if (allowConcurrent) return als.run(ctx, fn, ...args);
  currentCtx = ctx;
  return fn(...args);
}

const rawWrite = {
  out: process.stdout.write.bind(process.stdout),
  err: process.stderr.write.bind(process.stderr),
};

// A broken pipe on our own stdio must not crash the proxy.
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});

// Lines of both streams go to stdout, so their order survives; stderr lines carry the
// "\x03" separator instead of "\x02". Only the stderr sentinel goes to the stderr pipe.
function newLogContext(id) {
  return {
    tag: id ? '\x01' + id + '\x02' : '',
    errTag: id ? '\x01' + id + '\x03' : '',
    done: false,
    wrote: false, // anything written to stdout/stderr during the run
    out: '', // partial (unterminated) line per stream
    err: '',
    decOut: null, // StringDecoders for Buffer chunks, created lazily
    decErr: null,
  };
}

function chunkToString(ctx, key, chunk, encoding) {
  if (typeof chunk === 'string') {
    if (encoding && encoding !== 'utf8' && encoding !== 'utf-8' && Buffer.isEncoding(encoding)) {
      return Buffer.from(chunk, encoding).toString('utf8');
    }
    return chunk;
  }
  const decKey = key === 'out' ? 'decOut' : 'decErr';
  if (ctx[decKey] === null) ctx[decKey] = new StringDecoder('utf8');
  return ctx[decKey].write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
}

function patchStream(stream, key) {
  const raw = rawWrite[key];
  stream.write = function write(chunk, encoding, cb) {
    const ctx = logContext();
    if (ctx === undefined || ctx.done) return raw(chunk, encoding, cb);
    ctx.wrote = true;
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    const text = ctx[key] + chunkToString(ctx, key, chunk, encoding);
    const nl = text.lastIndexOf('\n');
    if (nl < 0) {
      ctx[key] = text;
      if (typeof cb === 'function') process.nextTick(cb);
      return true;
    }
    ctx[key] = text.slice(nl + 1);
    const body = text.slice(0, nl);
    const tag = key === 'err' && ctx.errTag ? ctx.errTag : ctx.tag;
    const tagged = tag + (tag ? body.split('\n').join('\n' + tag) : body) + '\n';
    return (tag ? rawWrite.out : raw)(tagged, cb);
  };
}

patchStream(process.stdout, 'out');
patchStream(process.stderr, 'err');

// Flushes partial lines and writes the sentinel on both streams. After this,
// anything the activation's leftover async work prints goes out untagged.
// Resolves once both writes have reached the pipes: Node writes to pipes
// asynchronously when they are full, and the sentinels must precede the
// HTTP response. (When the pipes have room, the writes complete at once.)
function endLogContext(ctx) {
  ctx.done = true;
  return new Promise((resolve) => {
    let pending = 2;
    const written = () => {
      if (--pending === 0) resolve();
    };
    // Partial lines first, then the sentinels: nothing tagged may follow a sentinel.
    for (const key of ['out', 'err']) {
      const dec = key === 'out' ? ctx.decOut : ctx.decErr;
      let rest = ctx[key] + (dec !== null ? dec.end() : '');
      ctx[key] = '';
      const tag = key === 'err' && ctx.errTag ? ctx.errTag : ctx.tag;
      if (rest !== '') {
        if (tag) rest = rest.split('\n').join('\n' + tag);
        rawWrite[tag ? 'out' : key](tag + rest + '\n');
      }
    }
    for (const key of ['out', 'err']) {
      rawWrite[key](ctx.tag + SENTINEL + '\n', written);
    }
  });
}

// Writes a line to stderr inside the given context (tagged).
function logError(ctx, text) {
  withLogContext(ctx, () => process.stderr.write(text + '\n'));
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function safeString(v) {
  try {
    return String(v);
  } catch (_) {
    try {
      return Object.prototype.toString.call(v);
    } catch (_e) {
      return 'unknown error';
    }
  }
}

function errorText(e) {
  if (e instanceof Error) return safeString(e.stack || e);
  return safeString(e);
}

function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function';
}

function isIdentifier(name) {
  try {
    // eslint-disable-next-line no-new-func
    new Function('return typeof ' + name + ';');
    // ASCII names first: compiling the Unicode pattern costs a millisecond or more, and a
    // fork's first use of it may compile it again.
    if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name)) return true;
    return /^[\p{L}\p{Nl}$_][\p{L}\p{Nl}\p{Mn}\p{Mc}\p{Nd}\p{Pc}$_\u200c\u200d]*$/u.test(name);
  } catch (_) {
    return false;
  }
}

// Serializes a rejection value the way it appears under "error" in the result.
function serializeRejection(e) {
  if (!e) return {};
  if (e instanceof Error) return safeString(e.message);
  return e;
}

// Minimal zip extraction (stored and deflated entries), used only when /init
// receives a base64 zip instead of an unpacked codeDir.
function unzip(buf, dest) {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('the code is not a valid zip archive');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const root = path.resolve(dest);
  for (let n = 0; n < count; n++) {
    if (p + 46 > buf.length || buf.readUInt32LE(p) !== 0x02014b50) throw new Error('the zip archive is corrupt');
    const method = buf.readUInt16LE(p + 10);
    const csize = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const mode = buf.readUInt32LE(p + 38) >>> 16;
    const local = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    const target = path.resolve(root, name);
    if (target !== root && !target.startsWith(root + path.sep)) throw new Error('zip entry escapes the archive: ' + name);
    if (name.endsWith('/')) {
      fs.mkdirSync(target, { recursive: true });
      continue;
    }
    if (buf.readUInt32LE(local) !== 0x04034b50) throw new Error('the zip archive is corrupt');
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const data = buf.subarray(start, start + csize);
    let content;
    if (method === 0) content = data;
    else if (method === 8) content = zlib().inflateRawSync(data);
    else throw new Error('unsupported zip compression method ' + method + ' for ' + name);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, content);
    if (mode & 0o111) fs.chmodSync(target, mode & 0o777);
  }
}

// ---------------------------------------------------------------------------
// Action state
// ---------------------------------------------------------------------------

let initialized = false;
// The tag of the activation whose run must end with sentinels because /init printed on its
// behalf ('' when none).
let initLogsOwedTo = '';
let initializing = false;
let mainFn = null;
let running = 0;

class InitError extends Error {}

// The real process.env is backed by the C environment: every write is a setenv(), and glibc
// keeps every distinct value ever set for the life of the process (a search tree that only
// grows). Per-run values (activation id, deadline) are new on every run, so writing them there
// leaks memory and makes each run slower than the last. A plain object copy avoids both: the
// action reads the same `process.env`, and child processes started with `child_process` get it
// too (it is their default `env`).
// Like the real one, it keeps values as strings.
const liveEnv = process.env;
function privateEnv() {
  return new Proxy(Object.assign({}, liveEnv), {
    set(target, key, value) {
      target[key] = String(value);
      return true;
    },
    defineProperty(target, key, desc) {
      if ('value' in desc) desc = { ...desc, value: String(desc.value) };
      return Reflect.defineProperty(target, key, desc);
    },
  });
}
process.env = privateEnv();

const owEnvNames = new Map();
function setOwEnv(key, value) {
  let name = owEnvNames.get(key);
  if (name === undefined) {
    name = '__OW_' + key.toUpperCase();
    owEnvNames.set(key, name);
  }
  process.env[name] = value;
}

function loadPlainCode(code, mainName) {
  // The module lives (virtually) in the working directory so that relative
  // requires and node_modules lookups behave like a file there.
  const filename = path.join(process.cwd(), '__brisk_action__.js');
  const mod = new Module(filename, null);
  mod.filename = filename;
  mod.paths = Module._nodeModulePaths(path.dirname(filename));
  // A top-level `function main` is local to the module wrapper; a trailer hands
  // it back to us through a temporary global.
  const key = '__brisk_capture_' + process.pid + '_' + Date.now();
  let local;
  globalThis[key] = (f) => {
    local = f;
  };
  const trailer = isIdentifier(mainName)
    ? `\n;globalThis[${JSON.stringify(key)}](typeof ${mainName} === 'function' ? ${mainName} : undefined);\n`
    : '\n';
  try {
    mod._compile(code + trailer, filename);
  } finally {
    delete globalThis[key];
  }
  const exported = mod.exports != null ? mod.exports[mainName] : undefined;
  if (typeof exported === 'function') return exported;
  return local;
}

async function loadCodeDir(dir, mainName) {
  let stat;
  try {
    stat = fs.statSync(dir);
  } catch (_) {
    throw new InitError('the code directory ' + dir + ' does not exist');
  }
  if (!stat.isDirectory()) throw new InitError('the code directory ' + dir + ' is not a directory');
  let entry = 'index.js';
  const pkgPath = path.join(dir, 'package.json');
  let hasPkg = false;
  if (fs.existsSync(pkgPath)) {
    hasPkg = true;
    let pkg;
    try {
      pkg = JSON.parse(fs.readFileSync(pkgPath, 'utf8'));
    } catch (e) {
      throw new InitError('package.json is not valid JSON: ' + safeString(e.message));
    }
    if (pkg && typeof pkg.main === 'string' && pkg.main !== '') entry = pkg.main;
  } else if (!fs.existsSync(path.join(dir, 'index.js'))) {
    throw new InitError('Zipped actions must contain either package.json or index.js at the root.');
  }
  const file = path.resolve(dir, entry);
  process.chdir(dir);
  let exported;
  try {
    exported = require(file);
  } catch (e) {
    if (e && e.code === 'ERR_REQUIRE_ESM') {
      const ns = await import(pathToFileURL(require.resolve(file)).href);
      exported = typeof ns[mainName] === 'function' ? ns : ns.default;
    } else if (e && e.code === 'MODULE_NOT_FOUND' && hasPkg && String(e.message).includes(file)) {
      throw new InitError('the file named by package.json "main" (' + entry + ') was not found: ' + safeString(e.message));
    } else {
      throw e;
    }
  }
  return exported != null ? exported[mainName] : undefined;
}

async function handleInit(msg, res) {
  if (initialized || initializing) {
    return send(res, 403, { error: 'Cannot initialize the action more than once.' });
  }
  const value = msg && typeof msg === 'object' && msg.value && typeof msg.value === 'object' ? msg.value : {};
  const mainName = typeof value.main === 'string' && value.main !== '' ? value.main : null;
  const code = typeof value.code === 'string' && value.code !== '' ? value.code : null;
  const codeDir = typeof value.codeDir === 'string' && value.codeDir !== '' ? value.codeDir : null;
  if (mainName === null || (code === null && codeDir === null)) {
    return send(res, 403, { error: 'Missing main/no code to execute.' });
  }
  initializing = true;

  const env = value.env && typeof value.env === 'object' ? value.env : {};
  for (const k of Object.keys(env)) {
    const v = env[k];
    process.env[k] = v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v);
  }
  const ctx = newLogContext(typeof env.__OW_ACTIVATION_ID === 'string' ? env.__OW_ACTIVATION_ID : '');

  let fn;
  try {
    fn = await withLogContext(ctx, async () => {
      if (codeDir !== null) return loadCodeDir(codeDir, mainName);
      if (value.binary === true) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brisk-action-'));
        unzip(Buffer.from(code, 'base64'), dir);
        return loadCodeDir(dir, mainName);
      }
      return loadPlainCode(code, mainName);
    });
    if (typeof fn !== 'function') {
      throw new InitError(`the action code does not define a function named '${mainName}' (entry point not found)`);
    }
  } catch (e) {
    initializing = false;
    const reason = e instanceof InitError ? e.message : e instanceof Error ? safeString(e.name + ': ' + e.message) : safeString(e);
    if (!(e instanceof InitError)) logError(ctx, errorText(e));
    logError(ctx, 'Initialization has failed due to: ' + reason);
    await endLogContext(ctx);
    return send(res, 502, { error: 'Initialization has failed due to: ' + reason });
  }
  // Successful init: top-level output so far stays tagged with the first
  // activation, whose run ends with the sentinel.
  endLogContextPartial(ctx);
  if (ctx.wrote) initLogsOwedTo = ctx.tag;
  mainFn = fn;
  allowConcurrent = process.env.__OW_ALLOW_CONCURRENT === 'true';
  initialized = true;
  initializing = false;
  return send(res, 200, { ok: true });
}

// Flushes partial lines of a successful init without writing sentinels.
function endLogContextPartial(ctx) {
  for (const key of ['out', 'err']) {
    if (ctx[key] !== '') {
      const tag = key === 'err' && ctx.errTag ? ctx.errTag : ctx.tag;
      rawWrite[tag ? 'out' : key](tag + (tag ? ctx[key].split('\n').join('\n' + tag) : ctx[key]) + '\n');
      ctx[key] = '';
    }
  }
  ctx.done = true;
}

// Runs that arrived while another was in progress, in a container without concurrency: they
// start one after another, in order of arrival (the invoker sends a short action's next run
// while the current one ends, so the container goes straight from one to the next).
const queuedRuns = [];

async function handleRun(msg, res) {
  if (!initialized) return send(res, 403, { error: 'System not initialized.' });
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) msg = {};
  if (running > 0 && !allowConcurrent) {
    queuedRuns.push({ msg, res, at: Date.now() });
    return;
  }
  running++;
  try {
    await runAction(msg, res);
  } finally {
    running--;
  }
  if (running === 0 && queuedRuns.length > 0) {
    const next = queuedRuns.shift();
    // Its time limit counts from now: the deadline moves by the time it waited.
    const deadline = Number(next.msg.deadline);
    if (Number.isFinite(deadline)) next.msg.deadline = String(deadline + (Date.now() - next.at));
    handleRun(next.msg, next.res).catch((e) => internalError(next.res, e));
  }
}

async function runAction(msg, res) {

  for (const k of Object.keys(msg)) {
    if (k !== 'value' && typeof msg[k] === 'string') setOwEnv(k, msg[k]);
  }
  const args = msg.value === undefined || msg.value === null ? {} : msg.value;
  const ctx = newLogContext(typeof msg.activation_id === 'string' ? msg.activation_id : '');

  let status = 200;
  let payload;
  let result;
  let threw = false;
  try {
    result = withLogContext(ctx, mainFn, args);
  } catch (e) {
    threw = true;
    status = 502;
    payload = { error: 'An error has occurred: ' + safeString(e) };
  }
  if (!threw) {
    let rejected = false;
    if (isThenable(result)) {
      try {
        result = await result;
      } catch (e) {
        rejected = true;
        payload = { error: serializeRejection(e) };
      }
    }
    if (!rejected) {
      if (result === undefined) result = {};
      payload = result;
    }
  }

  let body;
  if (status === 200) {
    try {
      body = JSON.stringify(payload);
    } catch (e) {
      status = 502;
      payload = { error: 'The action did not return a valid JSON result: ' + safeString(e && e.message) };
    }
    if (status === 200 && (typeof body !== 'string' || (body[0] !== '{' && body[0] !== '['))) {
      status = 502;
      payload = { error: NOT_A_DICTIONARY };
    }
  }
  if (status !== 200) body = JSON.stringify(payload);

  // A run that wrote nothing needs no sentinels: the response says so and the invoker does
  // not wait for them (two pipe writes and reads fewer per invoke).
  const quiet = !ctx.wrote && ctx.tag !== '' && ctx.tag !== initLogsOwedTo;
  if (ctx.tag === initLogsOwedTo) initLogsOwedTo = '';
  if (quiet) ctx.done = true;
  else await endLogContext(ctx);
  res.send(status, body, quiet ? 'none' : 'sentinels');
}

// ---------------------------------------------------------------------------
// HTTP server
// ---------------------------------------------------------------------------

// A small HTTP/1.1 server on `net`: the only client is the invoker (plus people testing by
// hand), requests are two routes with JSON bodies, and Node's `http` module costs about twice
// the CPU per request of the whole run (its request and response streams, header objects and
// timers). Requests on a connection are handled one after another and answered in order
// (pipelining is allowed); bodies come with `Content-Length` or chunked.

const MAX_HEAD = 64 * 1024;
const REASONS = {
  200: 'OK',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
};

// One response for one request of a connection.
class Reply {
  constructor(conn, close) {
    this.conn = conn;
    this.close = close;
    this.sent = false;
  }

  send(status, body, logs) {
    if (this.sent) return;
    this.sent = true;
    const conn = this.conn;
    let head =
      'HTTP/1.1 ' + status + ' ' + (REASONS[status] || 'Unknown') +
      '\r\nContent-Type: application/json\r\nContent-Length: ' + Buffer.byteLength(body) + '\r\n';
    if (logs !== undefined) head += 'X-Brisk-Logs: ' + logs + '\r\n';
    if (this.close) head += 'Connection: close\r\n';
    const text = head + '\r\n' + body;
    if (this.close) {
      conn.closing = true;
      conn.socket.end(text);
      return;
    }
    conn.socket.write(text);
    conn.busy = false;
    if (!conn.draining) drain(conn);
  }
}

function send(res, status, obj) {
  let body;
  try {
    body = JSON.stringify(obj);
  } catch (e) {
    status = 502;
    body = JSON.stringify({ error: 'The action did not return a valid JSON result: ' + safeString(e && e.message) });
  }
  res.send(status, body);
}

// Answers a request that cannot be parsed and closes the connection.
function refuse(conn, status, text) {
  conn.busy = true;
  new Reply(conn, true).send(status, JSON.stringify({ error: text }));
}

// The head of a request ending at `end` (its blank line), or `{ error: [status, text] }`.
function parseHead(buf, end) {
  const lines = buf.latin1Slice(0, end).split('\r\n');
  const m = /^([A-Z]+) (\S+) HTTP\/1\.([01])$/.exec(lines[0]);
  if (m === null) return { error: [400, 'Malformed request line.'] };
  const head = { method: m[1], url: m[2], close: m[3] === '0', length: 0, chunked: false, expect: false };
  let length = null;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    if (colon <= 0 || line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) {
      return { error: [400, 'Malformed header line.'] };
    }
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (length !== null && length !== Number(value))) {
        return { error: [400, 'Invalid Content-Length.'] };
      }
      length = Number(value);
    } else if (name === 'transfer-encoding') {
      if (value.toLowerCase() !== 'chunked') {
        return { error: [501, 'Only the chunked Transfer-Encoding is supported.'] };
      }
      head.chunked = true;
    } else if (name === 'connection') {
      const v = value.toLowerCase();
      if (v.includes('close')) head.close = true;
      else if (v.includes('keep-alive')) head.close = false;
    } else if (name === 'expect') {
      if (value.toLowerCase() === '100-continue') head.expect = true;
    }
  }
  if (head.chunked && length !== null) return { error: [400, 'Both Content-Length and Transfer-Encoding.'] };
  head.length = length === null ? 0 : length;
  return head;
}

const EMPTY = Buffer.alloc(0);

// The bytes buffered on `conn` as one Buffer.
function joined(conn) {
  if (conn.chunks.length > 1) conn.chunks = [Buffer.concat(conn.chunks, conn.size)];
  return conn.chunks.length === 1 ? conn.chunks[0] : EMPTY;
}

// Drops the first `n` buffered bytes of `conn` (call right after `joined`).
function consume(conn, n) {
  const rest = (conn.chunks.length > 0 ? conn.chunks[0] : EMPTY).subarray(n);
  conn.chunks = rest.length > 0 ? [rest] : [];
  conn.size = rest.length;
}

// Reads the chunks of a chunked body that have arrived, consuming them. Returns `null` while
// incomplete (setting `head.need`, the bytes needed before it is worth looking again),
// `{ error }` when malformed, or `{ body }` once the last chunk and the trailers are in.
function readChunks(conn, head) {
  for (;;) {
    const buf = joined(conn);
    const eol = buf.indexOf('\r\n');
    if (eol < 0) {
      if (buf.length > (head.trailers ? MAX_HEAD : 1024)) {
        return { error: head.trailers ? [431, 'The request trailers are too large.'] : [400, 'Malformed chunk size.'] };
      }
      head.need = buf.length + 1;
      return null;
    }
    if (head.trailers) {
      consume(conn, eol + 2);
      if (eol === 0) return { body: head.parts.length === 1 ? head.parts[0] : Buffer.concat(head.parts) };
      continue;
    }
    const sizeText = buf.latin1Slice(0, eol).split(';', 1)[0].trim();
    if (!/^[0-9a-fA-F]{1,12}$/.test(sizeText)) return { error: [400, 'Malformed chunk size.'] };
    const size = parseInt(sizeText, 16);
    if (size === 0) {
      consume(conn, eol + 2);
      head.trailers = true;
      continue;
    }
    const end = eol + 2 + size;
    if (buf.length < end + 2) {
      head.need = end + 2;
      return null;
    }
    if (buf[end] !== 13 || buf[end + 1] !== 10) return { error: [400, 'Malformed chunk.'] };
    head.parts.push(buf.subarray(eol + 2, end));
    consume(conn, end + 2);
  }
}

// Handles every complete request buffered on `conn`, one at a time. Body bytes are joined
// only once enough have arrived, so a large body costs one copy, not one per read.
function drain(conn) {
  conn.draining = true;
  try {
    while (!conn.busy && !conn.closing && (conn.size > 0 || conn.head !== null)) {
      let head = conn.head;
      if (head === null) {
        const buf = joined(conn);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (conn.size > MAX_HEAD) refuse(conn, 431, 'The request head is too large.');
          return;
        }
        head = parseHead(buf, end);
        if (head.error) {
          refuse(conn, head.error[0], head.error[1]);
          return;
        }
        consume(conn, end + 4);
        head.need = head.chunked ? 0 : head.length;
        head.parts = [];
        head.trailers = false;
        conn.head = head;
        if (head.expect && (head.chunked || conn.size < head.length)) {
          conn.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
        }
      }
      if (conn.size < head.need) return;
      let body;
      if (head.chunked) {
        const c = readChunks(conn, head);
        if (c === null) return;
        if (c.error) {
          refuse(conn, c.error[0], c.error[1]);
          return;
        }
        body = c.body;
      } else {
        body = joined(conn).subarray(0, head.length);
        consume(conn, head.length);
      }
      conn.head = null;
      conn.busy = true;
      dispatch(head, body, new Reply(conn, head.close));
    }
  } finally {
    conn.draining = false;
  }
}

function dispatch(head, body, res) {
  const q = head.url.indexOf('?');
  const url = q < 0 ? head.url : head.url.slice(0, q);
  if (url === '/ready' && head.method === 'POST') {
    // The invoker's readiness probe, the first request of a container.
    send(res, 200, { ok: true });
    return;
  }
  const route = url === '/init' || url === '/run' ? url : null;
  if (head.method !== 'POST' || route === null) {
    send(res, 404, { error: 'Not found.' });
    return;
  }
  let msg;
  try {
    msg = body.length === 0 ? {} : JSON.parse(body.utf8Slice(0, body.length));
  } catch (e) {
    send(res, 400, { error: 'The request body is not valid JSON: ' + safeString(e.message) });
    return;
  }
  const handler = route === '/init' ? handleInit : handleRun;
  handler(msg, res).catch((e) => internalError(res, e));
}

// Only reached on a bug in the proxy itself.
function internalError(res, e) {
  rawWrite.err('brisk proxy: internal error: ' + errorText(e) + '\n');
  send(res, 500, { error: 'Internal proxy error: ' + safeString(e && e.message) });
}

function onConnection(socket) {
  socket.setNoDelay(true);
  const conn = { socket, chunks: [], size: 0, head: null, busy: false, draining: false, closing: false };
  socket.on('data', (data) => {
    conn.chunks.push(data);
    conn.size += data.length;
    if (!conn.busy && !conn.draining) drain(conn);
  });
  // A client that goes away mid-request only loses its answer.
  socket.on('error', () => {});
}

const server = net.createServer(onConnection);

// Warm-up while the container waits in the pool: the first /init would otherwise pay for
// compiling this proxy's own code paths, the module loader and JSON handling (several ms).
// A throwaway module goes through the same compile path as user code; nothing of it stays.
function warmUp() {
  try {
    const fn = loadPlainCode('function main(a) { return { x: a.x }; }', 'main');
    const ctx = newLogContext('');
    ctx.done = true;
    withLogContext(ctx, () => JSON.parse(JSON.stringify(fn(JSON.parse('{"x":[1,"a",{"b":null}]}')))));
    delete require.cache[path.join(process.cwd(), '__brisk_action__.js')];
  } catch (_) {
    // best effort
  }
}
warmUp();

// Zygote mode (docs/fork-server.md): with BRISK_ZYGOTE naming the platform's native module,
// this process does not serve. Loaded and warmed up like a stem cell, it becomes a fork server
// on its stdin, and `serve` returns only in a fork that is now a container's runtime: inside
// its sandbox, with that container's environment, descriptors and privileges. What the fork
// inherited from the zygote and must not share with its siblings is made its own here.
if (liveEnv.BRISK_ZYGOTE) {
  rehearseServing(() => {
    const native = { exports: {} };
    process.dlopen(native, liveEnv.BRISK_ZYGOTE);
    becomeContainer(JSON.parse(native.exports.serve(0)), native.exports.exit);
    // Again, in the fork: the first writes to memory shared with the zygote copy a page each;
    // rehearsed here, they happen while a stem cell waits in the pool rather than during an
    // action's first invoke.
    warmUp();
    startServing();
  });
}

// In the zygote, before it forks: one request through a throwaway server of this proxy on an
// abstract Unix socket, answered and closed. Listening loads Node.js's cluster, child_process
// and dgram modules (net asks the cluster module whether it is the primary), and accepting,
// reading, parsing and answering compile this proxy's request path and Node.js's stream
// internals: done here once, the forks inherit it, where each fork would otherwise compile it
// again (several ms of CPU per container). `done` runs once every handle of the rehearsal is
// closed (nothing of it is inherited), or after a second should it stall.
function rehearseServing(done) {
  const sockets = new Set();
  let pending = 2;
  let finished = false;
  const finish = (clean) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    if (clean !== true) {
      // Stalled or failed: nothing of it may stay open into the forks.
      for (const s of sockets) s.destroy();
      if (rehearsal.listening) rehearsal.close();
    }
    setImmediate(done);
  };
  const step = () => {
    if (--pending === 0) finish(true);
  };
  const timer = setTimeout(finish, 1000);
  const rehearsal = net.createServer(onConnection);
  rehearsal.on('connection', (s) => sockets.add(s));
  rehearsal.on('error', finish);
  rehearsal.listen('\0brisk-zygote-rehearsal-' + process.pid, () => {
    const c = net.connect(rehearsal.address(), () => {
      c.end('POST /ready HTTP/1.1\r\nHost: zygote\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');
    });
    sockets.add(c);
    c.on('error', () => {});
    c.resume();
    c.on('close', () => {
      rehearsal.close(step);
      step();
    });
  });
}

// What Node.js prints for an error that ends the process.
function fatalReport(err) {
  let text;
  try {
    text = err instanceof Error && typeof err.stack === 'string' ? err.stack : 'Uncaught ' + safeString(err);
  } catch (_) {
    text = 'Uncaught exception';
  }
  return text + '\n\nNode.js ' + process.version + '\n';
}

function becomeContainer(forked, exit) {
  // Node.js's own exit joins the platform's threads, which only the zygote has: the fork ends
  // at once instead, once the 'exit' listeners have run (writes to the output pipes are
  // synchronous).
  if (typeof exit === 'function') {
    process.reallyExit = (code) => exit(code | 0);
    // An uncaught exception ends Node.js through that same exit, from C++, after the 'exit'
    // listeners and its report of the error. When nothing handles it, the fork reports the
    // error itself (synchronously) and ends, from an 'exit' listener added last.
    process.on('uncaughtExceptionMonitor', (err) => {
      if (process.listenerCount('uncaughtException') > 0 || process.hasUncaughtExceptionCaptureCallback()) return;
      process.on('exit', (code) => {
        try {
          fs.writeSync(2, fatalReport(err));
        } catch (_) {
          // stderr is gone
        }
        exit(code | 0);
      });
    });
  }
  // The environment is the container's now (the C environment was replaced). The shared
  // modules may have been installed since the zygote started.
  shareModules(liveEnv);
  process.env = privateEnv();
  allowConcurrent = process.env.__OW_ALLOW_CONCURRENT === 'true';
  // Node.js caches its pid and working directory.
  Object.defineProperty(process, 'pid', { value: forked.pid, writable: false, enumerable: true, configurable: true });
  process.chdir('.');
  // V8 seeds Math.random once per process, so every fork would draw the same numbers:
  // xoshiro128** from fresh entropy replaces it (53-bit doubles in [0, 1), like V8's).
  const s = Uint32Array.from(forked.seed);
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1;
  const next = () => {
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  };
  const rotl = (x, k) => (x << k) | (x >>> (32 - k));
  Object.defineProperty(Math, 'random', {
    value: function random() {
      return ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
    },
    writable: true,
    enumerable: false,
    configurable: true,
  });
}

// Serves on the socket the platform gave (or on BRISK_SOCKET / BRISK_PORT when started by hand).
function startServing() {
  const listenFd = process.env.BRISK_LISTEN_FD;
  const socketPath = process.env.BRISK_SOCKET;
  if (listenFd) {
    // Socket activation: the socket listens already, and the invoker's readiness probe waits in
    // its backlog. The probe is the first request through this server and warms its parser and
    // response path, as the request to itself below does.
    const fd = parseInt(listenFd, 10);
    if (fd === 0) {
      // Node cannot move the socket off stdin; the action's `process.stdin` reads /dev/null, as
      // it would without socket activation.
      let stdin = null;
      Object.defineProperty(process, 'stdin', {
        configurable: true,
        enumerable: true,
        get: () => stdin || (stdin = fs.createReadStream('/dev/null')),
      });
    }
    server.listen({ fd });
  } else if (socketPath) {
    try {
      fs.unlinkSync(socketPath);
    } catch (_) {
      // no stale socket
    }
    server.listen(socketPath, () => {
      // One request through our own HTTP stack warms the parser and the response path. It is
      // written by hand on a plain socket.
      const s = net.connect(socketPath, () => {
        s.end('POST /warmup HTTP/1.1\r\nHost: proxy\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');
      });
      s.on('error', () => {});
      s.resume();
    });
  } else {
    const port = parseInt(process.env.BRISK_PORT || '8080', 10);
    server.listen(port, '127.0.0.1');
  }
}

if (!liveEnv.BRISK_ZYGOTE) startServing();
