// Soak load for shardcast: connection churn, presence joins and leaves,
// client events and HTTP triggers against a running server, while sampling
// the server's RSS and open fds from /proc. Exits non-zero on any lost
// event or on growth without bound. Run by scripts/soak.sh, which starts the
// release server; needs the `ws` package from tests/clients/node_modules.
//
//   node soak.js --port P --pid PID --seconds N [--sample 5]
'use strict';
const path = require('path');
const fs = require('fs');
const http = require('http');
const crypto = require('crypto');
const WebSocket = require(path.join(__dirname, '..', 'clients', 'node_modules', 'ws'));

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const PORT = Number(args.port);
const PID = Number(args.pid);
const SECONDS = Number(args.seconds);
const SAMPLE_MS = Number(args.sample || 5) * 1000;
const APP = { id: 'app-id', key: 'app-key', secret: 'app-secret' };
const STABLE = 16; // subscribers that must see every trigger
const CHURN = 60; // connections churning at any moment
const PUBLISH_MS = 50; // one trigger every 50 ms
const CLIENT_EVENT_MS = 150; // under the 10/s default client-event limit

const sign = (s) => crypto.createHmac('sha256', APP.secret).update(s).digest('hex');
const md5 = (b) => crypto.createHash('md5').update(b).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log(`[soak ${new Date().toISOString().slice(11, 19)}]`, ...a);

let failures = [];
const fail = (why) => {
  failures.push(why);
  log('FAIL:', why);
};

// ---- HTTP API -------------------------------------------------------------
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
function api(method, p, bodyObj, extra = {}) {
  const body = bodyObj ? JSON.stringify(bodyObj) : '';
  const q = { auth_key: APP.key, auth_timestamp: String(Math.floor(Date.now() / 1000)), auth_version: '1.0', ...extra };
  if (body) q.body_md5 = md5(body);
  const keys = Object.keys(q).sort();
  const qs = keys.map((k) => `${k}=${q[k]}`).join('&');
  const sig = sign(`${method}\n${p}\n${qs}`);
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port: PORT, method, path: `${p}?${qs}&auth_signature=${sig}`, agent,
        headers: body ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {} },
      (res) => {
        let data = '';
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode, body: data }));
      },
    );
    req.on('error', (e) => resolve({ status: 0, body: String(e) }));
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

// ---- WebSocket clients ----------------------------------------------------
function connect() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${PORT}/app/${APP.key}?protocol=7&client=soak&version=1`);
    const t = setTimeout(() => { ws.terminate(); reject(new Error('connect timeout')); }, 5000);
    ws.on('error', (e) => { clearTimeout(t); reject(e); });
    ws.once('message', (m) => {
      clearTimeout(t);
      const v = JSON.parse(m);
      if (v.event !== 'pusher:connection_established') return reject(new Error(`first frame ${m}`));
      ws.socketId = JSON.parse(v.data).socket_id;
      ws.removeAllListeners('error');
      ws.on('error', () => {});
      // Answer the server's activity check as pusher-js does; a client that
      // stays silent is closed with 4201 after activity_timeout + pong_timeout.
      ws.on('message', (raw) => {
        if (String(raw).startsWith('{"event":"pusher:ping"')) {
          ws.send(JSON.stringify({ event: 'pusher:pong', data: {} }));
        }
      });
      ws.on('close', (code) => {
        if (ws.mustStay) fail(`${ws.socketId} (${ws.role}) was closed by the server with ${code}`);
      });
      resolve(ws);
    });
  });
}

function subscribe(ws, channel, channelData) {
  const data = { channel };
  if (channel.startsWith('private-')) data.auth = `${APP.key}:${sign(`${ws.socketId}:${channel}`)}`;
  if (channel.startsWith('presence-')) {
    data.channel_data = channelData;
    data.auth = `${APP.key}:${sign(`${ws.socketId}:${channel}:${channelData}`)}`;
  }
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`subscribe ${channel} timed out`)), 5000);
    const on = (m) => {
      const v = JSON.parse(m);
      if (v.channel === channel && v.event === 'pusher_internal:subscription_succeeded') {
        clearTimeout(t); ws.off('message', on); resolve();
      } else if (v.channel === channel && v.event === 'pusher:subscription_error') {
        clearTimeout(t); ws.off('message', on); reject(new Error(`subscription_error ${m}`));
      }
    };
    ws.on('message', on);
    ws.send(JSON.stringify({ event: 'pusher:subscribe', data }));
  });
}

// ---- /proc sampling -------------------------------------------------------
function sample() {
  const status = fs.readFileSync(`/proc/${PID}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
  const fds = fs.readdirSync(`/proc/${PID}/fd`).length;
  return { t: Date.now(), rss, fds };
}

async function main() {
  const started = Date.now();
  const end = started + SECONDS * 1000;
  const samples = [sample()];
  log(`start: RSS ${samples[0].rss} kB, ${samples[0].fds} fds; running ${SECONDS}s`);

  // Stable subscribers on the public channel, one presence member among them,
  // and a client-event pair on a private channel.
  const stable = [];
  for (let i = 0; i < STABLE; i++) {
    const ws = await connect();
    ws.got = [];
    ws.on('message', (m) => {
      const v = JSON.parse(m);
      if (v.event === 'tick' && v.channel === 'soak-ticks') ws.got.push(Number(v.data));
    });
    await subscribe(ws, 'soak-ticks');
    ws.mustStay = true;
    ws.role = `stable ${i}`;
    stable.push(ws);
  }
  const sender = await connect();
  const receiver = await connect();
  await subscribe(sender, 'private-soak-chat');
  await subscribe(receiver, 'private-soak-chat');
  const clientGot = [];
  receiver.on('message', (m) => {
    const v = JSON.parse(m);
    if (v.event === 'client-msg') clientGot.push((typeof v.data === 'string' ? JSON.parse(v.data) : v.data).n);
  });
  sender.on('message', (m) => {
    const v = JSON.parse(m);
    if (v.event === 'pusher:error') fail(`client event refused: ${m}`);
  });
  const watcher = await connect();
  let presenceEvents = 0;
  watcher.on('message', (m) => {
    const v = JSON.parse(m);
    if (v.event === 'pusher_internal:member_added' || v.event === 'pusher_internal:member_removed') presenceEvents++;
  });
  await subscribe(watcher, 'presence-soak', JSON.stringify({ user_id: 'watcher', user_info: { role: 'stable' } }));
  for (const [ws, role] of [[sender, 'sender'], [receiver, 'receiver'], [watcher, 'watcher']]) {
    ws.mustStay = true;
    ws.role = role;
  }

  // Publisher: accepted ticks must all arrive.
  const accepted = [];
  let refusedTicks = 0;
  let seq = 0;
  const publisher = (async () => {
    while (Date.now() < end) {
      const n = seq++;
      const r = await api('POST', `/apps/${APP.id}/events`, { name: 'tick', channel: 'soak-ticks', data: String(n) });
      if (r.status === 200) accepted.push(n);
      else { refusedTicks++; if (refusedTicks < 5) log(`trigger ${n} refused: ${r.status} ${r.body}`); }
      await sleep(PUBLISH_MS);
    }
  })();

  // Client events.
  let clientSent = 0;
  const chatter = (async () => {
    while (Date.now() < end) {
      sender.send(JSON.stringify({ event: 'client-msg', channel: 'private-soak-chat', data: { n: clientSent++ } }));
      await sleep(CLIENT_EVENT_MS);
    }
  })();

  // Churn: connections that join a public and the presence channel, stay a
  // little, and leave cleanly or abruptly.
  let churned = 0;
  let churnErrors = 0;
  const churner = async (k) => {
    while (Date.now() < end) {
      try {
        const ws = await connect();
        const user = `u${k}-${churned % 7}`; // users repeat: several sockets per user
        await subscribe(ws, `churn-${churned % 50}`);
        await subscribe(ws, 'presence-soak', JSON.stringify({ user_id: user, user_info: { k } }));
        if (churned % 5 === 0) ws.send(JSON.stringify({ event: 'pusher:ping', data: {} }));
        await sleep(200 + Math.random() * 1500);
        if (churned % 3 === 0) ws.terminate();
        else ws.close(1000);
        churned++;
      } catch (e) {
        churnErrors++;
        if (churnErrors < 10) log(`churn error: ${e.message}`);
        await sleep(200);
      }
    }
  };
  const churners = Array.from({ length: CHURN }, (_, k) => churner(k));

  // Sampling.
  const sampler = (async () => {
    let lastLog = 0;
    while (Date.now() < end) {
      await sleep(SAMPLE_MS);
      const s = sample();
      samples.push(s);
      if (s.t - lastLog >= 30000) {
        lastLog = s.t;
        log(`t=${Math.round((s.t - started) / 1000)}s RSS ${s.rss} kB, fds ${s.fds}, ticks ${accepted.length}, ` +
          `client events ${clientSent}, churned ${churned}, presence events ${presenceEvents}`);
      }
    }
  })();

  await Promise.all([publisher, chatter, sampler, ...churners]);
  log('load stopped; checking delivery');
  await sleep(3000);

  // Lost events.
  for (const [i, ws] of stable.entries()) {
    const got = new Set(ws.got);
    const lost = accepted.filter((n) => !got.has(n));
    if (lost.length) fail(`subscriber ${i} (${ws.socketId}) lost ${lost.length} of ${accepted.length} accepted triggers, e.g. ${lost.slice(0, 5)}`);
    const dup = ws.got.length - got.size;
    if (dup) fail(`subscriber ${i} got ${dup} duplicate triggers`);
    for (let j = 1; j < ws.got.length; j++) {
      if (ws.got[j] < ws.got[j - 1]) { fail(`subscriber ${i} got triggers out of order`); break; }
    }
  }
  if (presenceEvents < churned) fail(`only ${presenceEvents} presence events for ${churned} churned connections`);
  const cg = new Set(clientGot);
  const clientLost = clientSent - cg.size;
  if (clientLost) fail(`receiver lost ${clientLost} of ${clientSent} client events`);
  if (accepted.length === 0) fail('no trigger was accepted');
  if (refusedTicks) fail(`${refusedTicks} triggers were refused`);
  if (churnErrors > churned / 100 + 5) fail(`${churnErrors} churn connections failed (of ${churned})`);

  // Presence is back to the stable member only.
  const users = await api('GET', `/apps/${APP.id}/channels/presence-soak/users`);
  const ids = users.status === 200 ? JSON.parse(users.body).users.map((u) => u.id) : null;
  if (!ids || ids.length !== 1 || ids[0] !== 'watcher') fail(`presence-soak users after churn: ${users.status} ${users.body}`);

  for (const ws of [...stable, sender, receiver, watcher]) {
    ws.mustStay = false;
    ws.close(1000);
  }
  await sleep(3000);
  const after = sample();
  samples.push(after);

  // Growth: compare the first and last quarter of the run (after the first
  // sample). RSS may rise while pools warm up; what must not happen is a
  // rise that continues. fds must return to the baseline once all closed.
  const body = samples.slice(1, -1);
  const q = Math.max(1, Math.floor(body.length / 4));
  const max = (xs, f) => Math.max(...xs.map(f));
  const firstRss = max(body.slice(0, q), (s) => s.rss);
  const lastRss = max(body.slice(-q), (s) => s.rss);
  const firstFds = max(body.slice(0, q), (s) => s.fds);
  const lastFds = max(body.slice(-q), (s) => s.fds);
  const rssLimit = firstRss + Math.max(16 * 1024, firstRss * 0.15);
  if (lastRss > rssLimit) fail(`RSS grew: ${firstRss} kB max in the first quarter, ${lastRss} kB in the last (limit ${Math.round(rssLimit)} kB)`);
  if (lastFds > firstFds + 40) fail(`fds grew: ${firstFds} in the first quarter, ${lastFds} in the last`);
  if (after.fds > samples[0].fds + 4) fail(`fds after every client closed: ${after.fds}, at the start ${samples[0].fds}`);

  const peakRss = max(samples, (s) => s.rss);
  const peakFds = max(samples, (s) => s.fds);
  const summary = {
    seconds: Math.round((Date.now() - started) / 1000),
    triggers_accepted: accepted.length,
    deliveries_checked: accepted.length * stable.length,
    client_events: clientSent,
    connections_churned: churned,
    presence_events_seen: presenceEvents,
    rss_kb: { start: samples[0].rss, first_quarter_max: firstRss, last_quarter_max: lastRss, peak: peakRss, end: after.rss },
    fds: { start: samples[0].fds, first_quarter_max: firstFds, last_quarter_max: lastFds, peak: peakFds, end: after.fds },
    samples: samples.length,
  };
  console.log(JSON.stringify(summary, null, 2));
  if (args.csv) fs.writeFileSync(args.csv, 't_s,rss_kb,fds\n' + samples.map((s) => `${((s.t - started) / 1000).toFixed(1)},${s.rss},${s.fds}`).join('\n') + '\n');
  if (failures.length) {
    console.log(`SOAK FAILED (${failures.length}):\n- ${failures.join('\n- ')}`);
    process.exit(1);
  }
  console.log('SOAK PASSED');
  process.exit(0);
}

main().catch((e) => {
  console.log(`SOAK FAILED: ${e.stack || e}`);
  process.exit(1);
});
