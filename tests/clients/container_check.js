'use strict';
// Real clients against shardcast running in its container image, for
// scripts/container-test.sh (not part of `npm test`):
//   node container_check.js PORT CONTAINER
// pusher-js subscribes to a public and a private channel, the `pusher`
// library triggers on both and lists the channels; then `docker stop`
// (SIGTERM) must close a connected WebSocket with 4200 and the container
// must exit 0 within its grace period (a drain, not a SIGKILL).

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');

const {
  connectClient, disconnectAll, makeServerClient, rawConnect, subscribe, uniqueChannel,
  waitFor, withTimeout,
} = require('./helpers');
const { channelAuthorization } = require('./auth_helpers');

const run = promisify(execFile);

async function main() {
  const [port, container] = [Number(process.argv[2]), process.argv[3]];
  assert.ok(port > 0 && container, 'usage: node container_check.js PORT CONTAINER');
  const server = makeServerClient(port);

  const client = await connectClient(port, { channelAuthorization: channelAuthorization(server) });
  const open = await subscribe(client, uniqueChannel('container'));
  const closed = await subscribe(client, `private-${uniqueChannel('container')}`);
  const gotOpen = waitFor(open, 'greet');
  const gotClosed = waitFor(closed, 'greet');
  await server.trigger([open.name, closed.name], 'greet', { from: 'pusher library' });
  assert.deepEqual(await gotOpen, { from: 'pusher library' });
  assert.deepEqual(await gotClosed, { from: 'pusher library' });
  const res = await server.get({ path: '/channels' });
  const { channels } = await res.json();
  assert.ok(open.name in channels && closed.name in channels,
    `GET /channels lists ${JSON.stringify(channels)}`);
  console.log('pusher-js and pusher: public and private channels work through the container');
  await disconnectAll();

  const raw = rawConnect(port);
  assert.equal((await raw.next()).event, 'pusher:connection_established');
  const started = Date.now();
  await run('docker', ['stop', '--time', '10', container]);
  const stopSecs = (Date.now() - started) / 1000;
  const { code } = await withTimeout(raw.closed, 1_000, 'WebSocket close after docker stop');
  assert.equal(code, 4200, `close code ${code}; frames: ${JSON.stringify(raw.frames)}`);
  const { stdout } = await run('docker', ['inspect', '--format', '{{.State.ExitCode}}', container]);
  assert.equal(stdout.trim(), '0', `exit code after docker stop (137 = killed, no drain)`);
  console.log(`docker stop: WebSocket closed with 4200, exit 0 after ${stopSecs.toFixed(1)} s`);
}

main().then(() => process.exit(0), (e) => {
  console.error(`container_check: ${e.stack || e}`);
  process.exit(1);
});
