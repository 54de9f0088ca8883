'use strict';
// Child process for tls.test.js (not a test file itself). It runs with
// NODE_EXTRA_CA_CERTS pointing at the test's self-signed certificate, so that
// pusher-js (which has no `ca` option) and the `pusher` library verify the
// server's certificate for real; nothing here disables verification.
//
//   node tls_client.js PORT HOST trusted    # full wss:// + https:// round trip
//   node tls_client.js PORT HOST untrusted  # started without the extra CA: expect failures
//
// Prints one JSON line on stdout ({ ok: true, ... } or { ok: false, error })
// and exits; the whole run is bounded by CHILD_DEADLINE_MS.

const {
  collect, connectClient, disconnectAll, makeClient, makeServerClient, socketId, subscribe,
} = require('./helpers');

const CHILD_DEADLINE_MS = 25_000;

const [portArg, host = '127.0.0.1', mode = 'trusted'] = process.argv.slice(2);
const port = Number(portArg);

const report = {
  mode,
  host,
  port,
  extraCaCerts: process.env.NODE_EXTRA_CA_CERTS || null,
  rejectUnauthorized: process.env.NODE_TLS_REJECT_UNAUTHORIZED ?? null,
  steps: [],
};

let finished = false;
function finish(result, code) {
  if (finished) return;
  finished = true;
  process.stdout.write(`${JSON.stringify({ ...report, ...result })}\n`, () => process.exit(code));
}

const deadline = setTimeout(() => {
  finish({ ok: false, error: `tls_client did not finish within ${CHILD_DEADLINE_MS} ms` }, 2);
}, CHILD_DEADLINE_MS);

/** pusher-js options for wss://HOST:PORT only (no sockjs / xhr fallbacks). */
const tlsOptions = {
  forceTLS: true,
  wsHost: host,
  wssPort: port,
  enabledTransports: ['ws'],
};

/** The `pusher` server library over https://HOST:PORT. */
const api = makeServerClient(port, { host, useTLS: true });

/** Something JSON-safe out of whatever an error is. */
function describeError(err) {
  if (err == null) return String(err);
  const out = { message: String(err.message || err) };
  for (const k of ['name', 'code', 'status', 'type']) if (err[k] !== undefined) out[k] = String(err[k]);
  if (err.body !== undefined) out.body = String(err.body);
  if (err.error) out.cause = describeError(err.error);
  return out;
}

async function trusted() {
  const a = await connectClient(port, tlsOptions);
  const b = await connectClient(port, tlsOptions);
  report.steps.push('connected');
  report.socketIds = [socketId(a), socketId(b)];

  const name = `tls-${process.pid}-${host.replace(/[^A-Za-z0-9]/g, '_')}`;
  report.channel = name;
  const [cha, chb] = await Promise.all([subscribe(a, name), subscribe(b, name)]);
  report.steps.push('subscribed');
  const recA = collect(cha, 'tls-event');
  const recB = collect(chb, 'tls-event');

  // 1. A plain trigger reaches both connections.
  const first = await api.trigger(name, 'tls-event', { n: 1, text: 'over TLS ✓', nested: { ok: true } });
  report.triggerStatus = first.status;
  await Promise.all([recA.waitForCount(1), recB.waitForCount(1)]);
  report.steps.push('triggered');

  // 2. Excluding a's socket_id: only b gets it. 3. Then a plain one again:
  //    a receives n=3 after the point where n=2 would have arrived (events on
  //    one connection are ordered), so a missing n=2 means it was excluded.
  const excluded = await api.trigger(name, 'tls-event', { n: 2 }, { socket_id: socketId(a) });
  report.excludedTriggerStatus = excluded.status;
  await recB.waitForCount(2);
  await api.trigger(name, 'tls-event', { n: 3 });
  await Promise.all([recA.waitForCount(2), recB.waitForCount(3)]);
  report.steps.push('excluded');
  report.received = { a: recA.events.slice(), b: recB.events.slice() };

  // 4. GET /channels over https.
  const res = await api.get({ path: '/channels' });
  report.channelsStatus = res.status;
  report.channels = (await res.json()).channels;
  report.steps.push('queried');

  await disconnectAll();
}

async function untrusted() {
  // pusher-js must not get to `connected` with an unverifiable certificate.
  const client = makeClient(port, tlsOptions);
  const errors = [];
  client.connection.bind('error', (e) => errors.push(describeError(e && e.error ? e.error : e)));
  const states = [];
  client.connection.bind('state_change', ({ current }) => states.push(current));
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 4_000);
    client.connection.bind('state_change', ({ current }) => {
      if (current === 'connected' || current === 'unavailable' || current === 'failed') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  report.pusherJs = { state: client.connection.state, states, errors, socketId: client.connection.socket_id || null };
  await disconnectAll();

  // The `pusher` library's https request must fail with a certificate error.
  try {
    const res = await api.get({ path: '/channels' });
    report.serverLibrary = { status: res.status };
  } catch (err) {
    report.serverLibrary = { error: describeError(err) };
  }
}

(async () => {
  try {
    if (!Number.isInteger(port) || port <= 0) throw new Error(`bad port argument ${JSON.stringify(portArg)}`);
    if (mode === 'trusted') await trusted();
    else if (mode === 'untrusted') await untrusted();
    else throw new Error(`unknown mode ${JSON.stringify(mode)}`);
    clearTimeout(deadline);
    finish({ ok: true }, 0);
  } catch (err) {
    clearTimeout(deadline);
    finish({ ok: false, error: String(err && err.stack ? err.stack : err) }, 1);
  }
})();
