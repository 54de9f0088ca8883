'use strict';
// Helpers for authenticated pusher-js clients: channel authorization and user
// authentication signed locally by the `pusher` server library (through
// pusher-js 8's customHandler hooks, so no HTTP auth endpoint is needed), and
// waiting for connection-level errors and sign-in.

const {
  connectClient, connectOnShard, disconnectClient, makeClient, subscribe, waitConnected,
  waitForMatch, EVENT_TIMEOUT_MS,
} = require('./helpers');

/**
 * pusher-js `channelAuthorization` option signing with `signer` (a `pusher`
 * library instance). `presence` is the presence data ({user_id, user_info})
 * used for presence- channels. `calls` (optional array) records each request.
 */
function channelAuthorization(signer, { presence, calls } = {}) {
  return {
    customHandler: ({ socketId, channelName }, callback) => {
      if (calls) calls.push({ socketId, channelName });
      try {
        const data = channelName.startsWith('presence-') ? presence : undefined;
        callback(null, signer.authorizeChannel(socketId, channelName, data));
      } catch (e) {
        callback(e, null);
      }
    },
  };
}

/** pusher-js `userAuthentication` option signing `user` ({id, watchlist, ...}). */
function userAuthentication(signer, user, { calls } = {}) {
  return {
    customHandler: ({ socketId }, callback) => {
      if (calls) calls.push({ socketId });
      try {
        callback(null, signer.authenticateUser(socketId, user));
      } catch (e) {
        callback(e, null);
      }
    },
  };
}

/**
 * A connected pusher-js client whose channel authorization (and, with `user`,
 * user authentication) is signed by `signer`.
 */
function authedClient(port, signer, { presence, user, calls, options = {} } = {}) {
  const opts = { channelAuthorization: channelAuthorization(signer, { presence, calls }), ...options };
  if (user) opts.userAuthentication = userAuthentication(signer, user);
  return connectClient(port, opts);
}

/** Same as authedClient, but not yet awaited (for refused connections). */
function makeAuthedClient(port, signer, { presence, user, options = {} } = {}) {
  const opts = { channelAuthorization: channelAuthorization(signer, { presence }), ...options };
  if (user) opts.userAuthentication = userAuthentication(signer, user);
  return makeClient(port, opts);
}

/**
 * Resolve with the next connection `error` event carrying `pusher:error`
 * code `code` (pusher-js: {type:'PusherError', data:{code, message}}).
 * Bind BEFORE causing it.
 */
function waitConnectionError(client, code, timeout = EVENT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const seen = [];
    const timer = setTimeout(() => {
      client.connection.unbind('error', onError);
      reject(new Error(`no connection error with code ${code} within ${timeout} ms; errors seen: ${JSON.stringify(seen)}`));
    }, timeout);
    function onError(err) {
      seen.push(err);
      if (err && err.data && err.data.code === code) {
        clearTimeout(timer);
        client.connection.unbind('error', onError);
        resolve(err);
      }
    }
    client.connection.bind('error', onError);
  });
}

/** Record every connection `error` event (pusher:error and close errors). */
function collectConnectionErrors(client) {
  const errors = [];
  const handler = (e) => errors.push(e);
  client.connection.bind('error', handler);
  return {
    errors,
    codes: () => errors.map((e) => e && e.data && e.data.code),
    stop() { client.connection.unbind('error', handler); },
  };
}

/** Poll `cond` (may be async) every 20 ms until it is truthy; reject after `timeout`. */
async function until(cond, what, timeout = EVENT_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let presenceBarrierSeq = 0;

/**
 * The end of an absence check for presence member events, which a channel's
 * owner shard sends: a fresh user joins presence channel `name` (from a
 * connection on each shard in `shards`, one after the other; by default
 * wherever it lands) and leaves again, and this resolves once every Channel
 * of `channels` got its member_added and member_removed. The owner handles
 * the joins and leaves that reach it from one shard in order, and sends its
 * member events to each subscriber in order, so a member event the owner
 * sent for anything that reached it earlier from that shard (or that it
 * had answered before the barrier started) has arrived by then. Resolves
 * to the barrier's user ids, for filtering the recorded events.
 */
async function presenceBarrier(port, signer, name, channels, { shards = [null] } = {}) {
  const ids = [];
  for (const shard of shards) {
    presenceBarrierSeq += 1;
    const id = `barrier-${process.pid}-${presenceBarrierSeq}`;
    ids.push(id);
    const added = channels.map((ch) => waitForMatch(ch, 'pusher:member_added', (m) => m && m.id === id));
    const connect = () => authedClient(port, signer, { presence: { user_id: id, user_info: {} } });
    const client = shard === null ? await connect() : await connectOnShard(connect, shard);
    await subscribe(client, name);
    await Promise.all(added);
    const removed = channels.map((ch) => waitForMatch(ch, 'pusher:member_removed', (m) => m && m.id === id));
    await disconnectClient(client);
    await Promise.all(removed);
  }
  return ids;
}

/**
 * client.signin(), then wait for `pusher:signin_success` and for pusher-js's
 * subscription to `#server-to-user-{id}` to succeed (only then can
 * sendToUser reach it). Resolves to the signin_success data.
 */
async function signIn(client, timeout = EVENT_TIMEOUT_MS) {
  const success = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.unbind('pusher:signin_success', ok);
      reject(new Error(`no pusher:signin_success within ${timeout} ms`));
    }, timeout);
    function ok(data) {
      clearTimeout(timer);
      client.unbind('pusher:signin_success', ok);
      resolve(data);
    }
    client.bind('pusher:signin_success', ok);
  });
  client.signin();
  const data = await success;
  await until(() => client.user.serverToUserChannel && client.user.serverToUserChannel.subscribed,
    `subscription to #server-to-user-${client.user.user_data && client.user.user_data.id}`, timeout);
  return data;
}

/**
 * Resolve with [data, metadata] of the next `event` on a channel (pusher-js
 * passes metadata such as {user_id} as the second callback argument).
 */
function waitForWithMeta(channel, event, timeout = EVENT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      channel.unbind(event, handler);
      reject(new Error(`event "${event}" did not arrive on channel "${channel.name}" within ${timeout} ms`));
    }, timeout);
    function handler(data, metadata) {
      clearTimeout(timer);
      channel.unbind(event, handler);
      resolve([data, metadata]);
    }
    channel.bind(event, handler);
  });
}

/** Wait for a state (e.g. 'disconnected') on a pusher-js connection. */
function waitState(client, state, timeout = EVENT_TIMEOUT_MS) {
  if (client.connection.state === state) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.connection.unbind('state_change', onState);
      reject(new Error(`connection did not reach "${state}" within ${timeout} ms (state ${client.connection.state})`));
    }, timeout);
    function onState({ current }) {
      if (current === state) {
        clearTimeout(timer);
        client.connection.unbind('state_change', onState);
        resolve();
      }
    }
    client.connection.bind('state_change', onState);
  });
}

/**
 * When the server closes an established connection with a 4000-4099 code
 * ("refused"), pusher-js 8 calls close() on the already-closed faye-websocket
 * socket, which arms a 30 s close timer that is never cleared: harmless in a
 * browser, but it keeps the test process alive for 30 s. Unref that timer
 * (pusher-js internals; a no-op if they change). Call while connected.
 */
function unrefCloseTimer(client) {
  const conn = client.connection && client.connection.connection;
  const socket = conn && conn.transport && conn.transport.socket;
  if (!socket || typeof socket.close !== 'function') return;
  const close = socket.close;
  socket.close = function (...args) {
    const r = close.apply(this, args);
    if (this._closeTimer && typeof this._closeTimer.unref === 'function') this._closeTimer.unref();
    return r;
  };
}

/** Wait for `event` on the signed-in user facade (pusher.user). */
function waitUserEvent(client, event, timeout = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.user.unbind(event, handler);
      reject(new Error(`user event "${event}" did not arrive within ${timeout} ms`));
    }, timeout);
    function handler(data) {
      clearTimeout(timer);
      client.user.unbind(event, handler);
      resolve(data);
    }
    client.user.bind(event, handler);
  });
}

module.exports = {
  authedClient,
  unrefCloseTimer,
  channelAuthorization,
  collectConnectionErrors,
  makeAuthedClient,
  presenceBarrier,
  signIn,
  until,
  userAuthentication,
  waitConnected,
  waitConnectionError,
  waitForWithMeta,
  waitState,
  waitUserEvent,
};
