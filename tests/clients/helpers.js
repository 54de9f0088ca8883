'use strict';
// Shared helpers for the real-client test suite: start/stop the shardcast
// binary, build pusher-js clients and `pusher` server-library clients, and a
// few promise utilities with timeouts.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const PusherClient = require('pusher-js'); // Node build (dist/node/pusher.js)
const PusherServer = require('pusher');

const APP_ID = 'app-id';
const APP_KEY = 'app-key';
const APP_SECRET = 'app-secret';

const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 6_000;
const EVENT_TIMEOUT_MS = 5_000;

const DEBUG = !!process.env.SHARDCAST_TEST_DEBUG;

if (DEBUG) {
  PusherClient.log = (msg) => process.stderr.write(`[pusher-js] ${msg}\n`);
}

function binaryPath() {
  if (process.env.SHARDCAST_BIN) return path.resolve(process.env.SHARDCAST_BIN);
  return path.resolve(__dirname, '..', '..', 'target', 'debug', 'shardcast');
}

/** Two shards: on CPUs 0 and 1 if the machine has two, else twice on CPU 0. */
function cpuList() {
  if (process.env.SHARDCAST_TEST_CPUS) return process.env.SHARDCAST_TEST_CPUS;
  const n = typeof os.availableParallelism === 'function'
    ? os.availableParallelism()
    : os.cpus().length;
  return n >= 2 ? '0,1' : '0,0';
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch (_) { /* already gone */ }
  }
});

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * Start shardcast on an ephemeral port.
 *
 * @param {object} [opts]
 * @param {string} [opts.config] TOML text; written to a temp file and passed as --config
 * @param {string[]} [opts.args] extra command-line arguments
 * @param {object} [opts.env] extra environment variables
 * @returns {Promise<{port:number, host:string, proc:import('child_process').ChildProcess,
 *   stderr:()=>string, stop:()=>Promise<{code:number|null, signal:string|null}>}>}
 */
async function startServer(opts = {}) {
  const bin = binaryPath();
  if (!fs.existsSync(bin)) {
    throw new Error(`shardcast binary not found at ${bin} (build it with \`cargo build\` or set SHARDCAST_BIN)`);
  }
  const args = ['--host', '127.0.0.1', '--port', '0', '--cpus', cpuList()];
  let tmpDir = null;
  if (opts.config != null) {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-test-'));
    const file = path.join(tmpDir, 'config.toml');
    fs.writeFileSync(file, opts.config);
    args.push('--config', file);
  }
  if (opts.args) args.push(...opts.args);

  const env = { RUST_LOG: process.env.RUST_LOG || 'info', ...process.env };
  // Without a config file the dev app's credentials may come from these;
  // the tests expect the built-in app-id / app-key / app-secret.
  for (const k of ['SHARDCAST_APP_ID', 'SHARDCAST_APP_KEY', 'SHARDCAST_APP_SECRET']) delete env[k];
  Object.assign(env, opts.env || {});
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.add(proc);

  let stderr = '';
  let stdout = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { stdout += d; if (DEBUG) process.stderr.write(`[shardcast:out] ${d}`); });

  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      running.delete(proc);
      if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
      resolve({ code, signal });
    });
  });

  const cmdline = `${bin} ${args.join(' ')}`;
  const port = await new Promise((resolve, reject) => {
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve(value);
    };
    const timer = setTimeout(() => {
      finish(new Error(`shardcast did not report "listening on HOST:PORT" within ${READY_TIMEOUT_MS} ms\n` +
        `command: ${cmdline}\n--- stderr ---\n${stderr}\n--- stdout ---\n${stdout}`));
      proc.kill('SIGKILL');
    }, READY_TIMEOUT_MS);
    proc.stderr.on('data', (d) => {
      stderr += d;
      if (DEBUG) process.stderr.write(`[shardcast] ${d}`);
      const m = stderr.replace(ANSI, '').match(/listening on [^ ]*:(\d+)/);
      if (m && Number(m[1]) > 0) finish(null, Number(m[1]));
    });
    proc.once('error', (err) => finish(new Error(`failed to spawn ${cmdline}: ${err.message}`)));
    exited.then(({ code, signal }) => finish(new Error(
      `shardcast exited before it was ready (code ${code}, signal ${signal})\n` +
      `command: ${cmdline}\n--- stderr ---\n${stderr}\n--- stdout ---\n${stdout}`)));
  });

  let stopping = null;
  const stop = () => {
    if (stopping) return stopping;
    stopping = (async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        let forced = false;
        const killer = setTimeout(() => {
          forced = true;
          process.stderr.write(`WARNING: shardcast (pid ${proc.pid}) did not exit within ${STOP_GRACE_MS} ms of SIGTERM; sent SIGKILL\n`);
          proc.kill('SIGKILL');
        }, STOP_GRACE_MS);
        const result = await exited;
        clearTimeout(killer);
        return forced ? { ...result, forced } : result;
      }
      return exited;
    })();
    return stopping;
  };

  return {
    port,
    host: '127.0.0.1',
    proc,
    args,
    stderr: () => stderr,
    /** true while the process is still running */
    alive: () => proc.exitCode === null && proc.signalCode === null,
    stop,
  };
}

/** Build a default-credentials config text (extra lines go in the [[apps]] table). */
function appConfig({ server = {}, app = {} } = {}) {
  const lines = ['[server]'];
  for (const [k, v] of Object.entries(server)) lines.push(`${k} = ${tomlValue(v)}`);
  lines.push('', '[[apps]]');
  const a = { id: APP_ID, key: APP_KEY, secret: APP_SECRET, ...app };
  for (const [k, v] of Object.entries(a)) lines.push(`${k} = ${tomlValue(v)}`);
  return lines.join('\n') + '\n';
}

function tomlValue(v) {
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

// ---------------------------------------------------------------------------
// Clients

const clients = new Set();

/**
 * A pusher-js client pointed at the server; not yet awaited.
 * In Node, `require('pusher-js')` is the node build, which ships its own
 * WebSocket implementation. pusher-js 8 requires `cluster`, and only uses
 * wsHost/wsPort when forceTLS is false and the transport is 'ws'.
 */
function makeClient(port, { key = APP_KEY, ...options } = {}) {
  const client = new PusherClient(key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    enableStats: false,
    ...options,
  });
  clients.add(client);
  return client;
}

/** Resolve once the client reaches `connected`; reject on failure/timeout. */
function waitConnected(client, timeout = EVENT_TIMEOUT_MS) {
  if (client.connection.state === 'connected') return Promise.resolve(client);
  return new Promise((resolve, reject) => {
    const errors = [];
    const onState = ({ current }) => {
      if (current === 'connected') { cleanup(); resolve(client); }
      else if (current === 'failed' || current === 'disconnected' || current === 'unavailable') {
        cleanup();
        reject(new Error(`pusher-js connection went to state "${current}" (errors: ${JSON.stringify(errors)})`));
      }
    };
    const onError = (err) => errors.push(err);
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`pusher-js did not connect within ${timeout} ms (state ${client.connection.state}, errors: ${JSON.stringify(errors)})`));
    }, timeout);
    const cleanup = () => {
      clearTimeout(timer);
      client.connection.unbind('state_change', onState);
      client.connection.unbind('error', onError);
    };
    client.connection.bind('state_change', onState);
    client.connection.bind('error', onError);
  });
}

/** makeClient + wait for `connected`. */
async function connectClient(port, options) {
  const client = makeClient(port, options);
  await waitConnected(client);
  return client;
}

/** Subscribe and wait for pusher:subscription_succeeded; resolves to the Channel. */
function subscribe(client, channelName, timeout = EVENT_TIMEOUT_MS) {
  const channel = client.subscribe(channelName);
  if (channel.subscribed) return Promise.resolve(channel);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no pusher:subscription_succeeded for "${channelName}" within ${timeout} ms`));
    }, timeout);
    const ok = () => { cleanup(); resolve(channel); };
    const fail = (status) => {
      cleanup();
      reject(new Error(`pusher:subscription_error on "${channelName}": ${JSON.stringify(status)}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      channel.unbind('pusher:subscription_succeeded', ok);
      channel.unbind('pusher:subscription_error', fail);
    };
    channel.bind('pusher:subscription_succeeded', ok);
    channel.bind('pusher:subscription_error', fail);
  });
}

/** The socket id pusher-js got from pusher:connection_established. */
function socketId(client) {
  const id = client.connection.socket_id;
  if (!id) throw new Error(`client has no socket_id (state ${client.connection.state})`);
  return id;
}

/** Disconnect one client and wait until pusher-js reports `disconnected`. */
function disconnectClient(client, timeout = 2_000) {
  clients.delete(client);
  const state = client.connection.state;
  if (state === 'disconnected' || state === 'initialized' || state === 'failed') {
    client.disconnect();
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeout);
    function done() {
      clearTimeout(timer);
      client.connection.unbind('state_change', onState);
      resolve();
    }
    function onState({ current }) { if (current === 'disconnected') done(); }
    client.connection.bind('state_change', onState);
    client.disconnect();
  });
}

/** Disconnect every client created through makeClient (use in afterEach/after). */
async function disconnectAll() {
  await Promise.all([...clients].map((c) => disconnectClient(c)));
}

/** A `pusher` (server library 5.x) REST client for the server under test. */
function makeServerClient(port, overrides = {}) {
  return new PusherServer({
    appId: APP_ID,
    key: APP_KEY,
    secret: APP_SECRET,
    host: '127.0.0.1',
    port: String(port),
    useTLS: false,
    timeout: 5_000,
    ...overrides,
  });
}

/**
 * A `pusher` client whose requests all go over ONE keep-alive HTTP
 * connection (an agent with maxSockets 1), which the server treats as one
 * publisher: its events reach each subscriber in the order published. So an
 * event it publishes after another is a barrier for that other one (see
 * publishedBarrier). `connectionsOpened()` counts the TCP connections the
 * agent made; a barrier checks that it is still 1.
 */
function makePublisher(port, overrides = {}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let opened = 0;
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (...args) => { opened += 1; return create(...args); };
  const publisher = makeServerClient(port, { agent, ...overrides });
  publisher.connectionsOpened = () => opened;
  return publisher;
}

// ---------------------------------------------------------------------------
// Promise helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Resolve with the data of the next `event` on `target` (a pusher-js Channel,
 * or the client itself for global bindings). Bind BEFORE triggering.
 */
function waitFor(target, event, timeout = EVENT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const name = target.name ? `channel "${target.name}"` : 'client';
    const timer = setTimeout(() => {
      target.unbind(event, handler);
      reject(new Error(`event "${event}" did not arrive on ${name} within ${timeout} ms`));
    }, timeout);
    function handler(data) {
      clearTimeout(timer);
      target.unbind(event, handler);
      resolve(data);
    }
    target.bind(event, handler);
  });
}

/**
 * Record every `event` on `target`. Returns { events, waitForCount(n), stop() }.
 */
function collect(target, event) {
  const events = [];
  let waiters = [];
  const handler = (data) => {
    events.push(data);
    waiters = waiters.filter((w) => {
      if (events.length >= w.n) { w.resolve(events.slice()); return false; }
      return true;
    });
  };
  target.bind(event, handler);
  return {
    events,
    waitForCount(n, timeout = EVENT_TIMEOUT_MS) {
      if (events.length >= n) return Promise.resolve(events.slice());
      return new Promise((resolve, reject) => {
        const w = { n, resolve: (v) => { clearTimeout(w.timer); resolve(v); } };
        w.timer = setTimeout(() => {
          waiters = waiters.filter((x) => x !== w);
          reject(new Error(`expected ${n} "${event}" events, got ${events.length} within ${timeout} ms: ${JSON.stringify(events)}`));
        }, timeout);
        waiters.push(w);
      });
    },
    stop() { target.unbind(event, handler); },
  };
}

/**
 * Watch `target` for an `event` that must NOT arrive; bind BEFORE
 * triggering. `await watch.until(barrier)` waits for `barrier` (a promise
 * that settles only once the unwanted event would have arrived: a
 * publishedBarrier, a pingBarrier, or a reply the server sends after it)
 * and then fails if the event came. There is no fixed wait: a late event
 * cannot pass for an absent one.
 */
function expectNothing(target, event) {
  const name = target.name ? `channel "${target.name}"` : 'client';
  const got = [];
  const handler = (data) => got.push(data);
  target.bind(event, handler);
  return {
    events: got,
    async until(barrier) {
      try {
        await barrier;
      } finally {
        target.unbind(event, handler);
      }
      if (got.length) throw new Error(`unexpected "${event}" on ${name}: ${JSON.stringify(got)}`);
    },
  };
}

let barrierSeq = 0;

/**
 * The end of an absence check for events a server publisher sent: publish
 * a `barrier` event through `publisher` (a makePublisher client, the one
 * that published the unwanted events) on the channels of `channels`
 * (pusher-js Channels, one or more per client that must have got nothing)
 * and resolve when it has arrived on every one of them. The server delivers
 * one HTTP connection's publications to each subscriber in order and writes
 * a socket's frames in order, so by then an earlier event from that
 * publisher to those clients has arrived too: assert its absence after
 * this. Channels that share a name get one publication.
 */
async function publishedBarrier(publisher, channels, timeout = EVENT_TIMEOUT_MS) {
  barrierSeq += 1;
  const tag = `barrier-${process.pid}-${barrierSeq}`;
  const arrived = channels.map((ch) => waitForMatch(ch, 'barrier', (d) => d && d.tag === tag, timeout));
  const names = [...new Set(channels.map((ch) => ch.name))];
  await publisher.trigger(names, 'barrier', { tag });
  await Promise.all(arrived);
  const opened = publisher.connectionsOpened();
  if (opened !== 1) {
    throw new Error(`the publisher used ${opened} HTTP connections; a barrier orders only one connection's events`);
  }
}

/**
 * The end of an absence check for things a client's own connection caused
 * (its client events, subscribe and sign-in messages): send pusher:ping and
 * resolve on the pusher:pong. The server handles one connection's messages
 * in order, and what that handling queues for this socket (an error, a
 * subscription_succeeded, an echo to a local subscriber) is written before
 * the pong, which is queued after it.
 */
function pingBarrier(client, timeout = EVENT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.connection.unbind('message', handler);
      reject(new Error(`no pusher:pong within ${timeout} ms`));
    }, timeout);
    function handler(msg) {
      if (msg.event !== 'pusher:pong') return;
      clearTimeout(timer);
      client.connection.unbind('message', handler);
      resolve();
    }
    client.connection.bind('message', handler);
    client.send_event('pusher:ping', {});
  });
}

/**
 * The end of an absence check for client events: `from` (a pusher-js
 * private or presence Channel) triggers `client-barrier` and this resolves
 * when it has arrived on every Channel of `to` (other clients' Channels of
 * that name). The server relays one connection's client events to each
 * subscriber in order, so an earlier client event of that connection to
 * those clients has arrived by then. It is sent again every 250 ms until it
 * arrives, for a sender whose earlier events used up its rate window.
 */
async function clientEventBarrier(from, to, timeout = EVENT_TIMEOUT_MS) {
  barrierSeq += 1;
  const tag = `barrier-${process.pid}-${barrierSeq}`;
  const arrived = Promise.all(to.map((ch) => waitForMatch(ch, 'client-barrier', (d) => d && d.tag === tag, timeout)));
  let done = false;
  const resend = (async () => {
    while (!done) {
      from.trigger('client-barrier', { tag });
      await sleep(250);
    }
  })();
  try {
    await arrived;
  } finally {
    done = true;
    await resend;
  }
}

/**
 * The owner shard of a channel or user of the first app on a 2-shard node:
 * FNV-1a over the app index (4 zero bytes) and the name, modulo 2 (as
 * shardcast's owner_of).
 */
function ownerOf(name) {
  let h = 0xcbf29ce484222325n;
  for (const b of [0, 0, 0, 0, ...Buffer.from(name, 'utf8')]) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return Number(h % 2n);
}

/** The shard that owns a connection: `N % 1024` of its socket_id `N.M`. */
function shardOf(socketId) {
  return Number(socketId.split('.')[0]) % 1024;
}

/**
 * `connect()` (resolving to a connected pusher-js client) until the client
 * is on shard `shard`; the others are disconnected. With two shards and the
 * kernel spreading connections, 100 tries fail only when the spread does.
 */
async function connectOnShard(connect, shard, tries = 100) {
  for (let i = 0; i < tries; i++) {
    const client = await connect();
    if (shardOf(socketId(client)) === shard) return client;
    await disconnectClient(client);
  }
  throw new Error(`no connection landed on shard ${shard} in ${tries} tries`);
}

/**
 * pusher-js has disconnected for good: state `disconnected` and no retry
 * timer armed. On a close code 4000-4099 ("refused") pusher-js calls
 * disconnect() instead of retryIn(), so this is what "does not reconnect"
 * means, checked directly instead of by waiting for a reconnect that does
 * not come.
 */
function assertNoReconnect(client, label = 'client') {
  if (client.connection.state !== 'disconnected') {
    throw new Error(`${label}: state ${client.connection.state}, expected disconnected`);
  }
  const retry = client.connection.retryTimer;
  if (retry && retry.isRunning()) throw new Error(`${label}: pusher-js scheduled a reconnect`);
}

/** Like waitFor, for the next `event` whose data satisfies `match`. */
function waitForMatch(target, event, match, timeout = EVENT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const name = target.name ? `channel "${target.name}"` : 'client';
    const timer = setTimeout(() => {
      target.unbind(event, handler);
      reject(new Error(`no matching "${event}" arrived on ${name} within ${timeout} ms`));
    }, timeout);
    function handler(data) {
      if (!match(data)) return;
      clearTimeout(timer);
      target.unbind(event, handler);
      resolve(data);
    }
    target.bind(event, handler);
  });
}

/** Reject if `promise` does not settle within `ms`. */
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Record every protocol message pusher-js receives on its connection (all
 * channels, including ones the client is no longer subscribed to), optionally
 * filtered. Returns the same shape as collect().
 */
function watchMessages(client, filter = () => true) {
  const events = [];
  const handler = (msg) => { if (filter(msg)) events.push(msg); };
  client.connection.bind('message', handler);
  return { events, stop() { client.connection.unbind('message', handler); } };
}

// ---------------------------------------------------------------------------
// Raw WebSocket (the `ws` package), for checking frames and close codes that
// pusher-js does not surface.

/**
 * Open a raw protocol-7 connection. Returns
 * { ws, next(timeout) -> parsed frame, send(obj), closed -> {code, reason}, frames }.
 */
function rawConnect(port, { key = APP_KEY, query = 'protocol=7&client=js&version=8.6.0&flash=false', wsOptions = {} } = {}) {
  const WebSocket = require('ws');
  const url = `ws://127.0.0.1:${port}/app/${encodeURIComponent(key)}?${query}`;
  const ws = new WebSocket(url, wsOptions);
  const frames = [];
  const queue = [];
  let waiters = [];
  const closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const w of waiters) w.reject(new Error(`socket closed (code ${code}) while waiting for a frame; frames so far: ${JSON.stringify(frames)}`));
      waiters = [];
    });
  });
  ws.on('error', () => { /* surfaced via close / next() timeouts */ });
  ws.on('message', (buf) => {
    const text = buf.toString();
    let frame;
    try { frame = JSON.parse(text); } catch (_) { frame = { unparsable: text }; }
    frames.push(frame);
    if (waiters.length) waiters.shift().resolve(frame); else queue.push(frame);
  });
  const opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode} instead of a WebSocket upgrade`)));
    ws.once('error', reject);
  });
  return {
    ws,
    frames,
    opened,
    closed,
    next(timeout = EVENT_TIMEOUT_MS) {
      if (queue.length) return Promise.resolve(queue.shift());
      if (ws.readyState === ws.CLOSED) return Promise.reject(new Error(`socket already closed; frames so far: ${JSON.stringify(frames)}`));
      return new Promise((resolve, reject) => {
        const w = {
          resolve: (f) => { clearTimeout(w.timer); resolve(f); },
          reject: (e) => { clearTimeout(w.timer); reject(e); },
        };
        w.timer = setTimeout(() => {
          waiters = waiters.filter((x) => x !== w);
          reject(new Error(`no frame within ${timeout} ms; frames so far: ${JSON.stringify(frames)}`));
        }, timeout);
        waiters.push(w);
      });
    },
    send(obj) { ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); },
    close() { if (ws.readyState !== ws.CLOSED) ws.terminate(); return closed; },
  };
}

/** Unique-ish channel names so tests in one file never see each other's events. */
let seq = 0;
function uniqueChannel(prefix = 'test') {
  seq += 1;
  return `${prefix}-${process.pid}-${seq}`;
}

module.exports = {
  APP_ID,
  APP_KEY,
  APP_SECRET,
  EVENT_TIMEOUT_MS,
  PusherClient,
  PusherServer,
  appConfig,
  assertNoReconnect,
  binaryPath,
  collect,
  connectClient,
  connectOnShard,
  cpuList,
  disconnectAll,
  disconnectClient,
  expectNothing,
  clientEventBarrier,
  makeClient,
  makePublisher,
  makeServerClient,
  ownerOf,
  pingBarrier,
  publishedBarrier,
  rawConnect,
  shardOf,
  sleep,
  socketId,
  startServer,
  subscribe,
  uniqueChannel,
  waitConnected,
  waitFor,
  waitForMatch,
  watchMessages,
  withTimeout,
};
