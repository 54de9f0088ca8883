// The shardcast debug console. The token lives only in this page's memory
// and travels only in the Authorization header. Every value from the server
// is shown with textContent, never as HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const WINDOW_POINTS = 300; // five minutes of one-second stats
  const state = {
    token: null,
    controller: null,
    paused: false,
    pending: [],
    pendingLost: 0,
    cap: 500,
    shards: 0,
    charts: null,
    series: null,
    kindsFilled: false,
    appsFilled: false,
    dropped: { at_buffers: 0, skipped: 0 },
  };

  function authHeaders(extra) {
    return Object.assign({ Authorization: "Bearer " + state.token }, extra || {});
  }

  function setStatus(text) { $("status").textContent = text; }

  // ---- sign-in -----------------------------------------------------------
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    state.token = $("token").value;
    $("token").value = "";
    const err = $("login-error");
    err.hidden = true;
    let res;
    try {
      res = await fetch("/console/apps", { headers: authHeaders(), cache: "no-store" });
    } catch (e) {
      err.textContent = "cannot reach the server: " + e.message;
      err.hidden = false;
      return;
    }
    if (res.status === 401) {
      state.token = null;
      err.textContent = "wrong token";
      err.hidden = false;
      return;
    }
    if (!res.ok) {
      err.textContent = "the server answered " + res.status;
      err.hidden = false;
      return;
    }
    const body = await res.json();
    fillApps(body.apps);
    $("login").hidden = true;
    $("main").hidden = false;
    startStream();
  });

  function signOut(why) {
    if (state.controller) state.controller.abort();
    state.token = null;
    $("main").hidden = true;
    $("login").hidden = false;
    const err = $("login-error");
    err.textContent = why;
    err.hidden = false;
    setStatus("signed out");
  }

  function fillApps(apps) {
    if (state.appsFilled) return;
    state.appsFilled = true;
    for (const id of apps) {
      for (const sel of [$("filter-app"), $("creator-app")]) {
        const o = document.createElement("option");
        o.value = id;
        o.textContent = id;
        sel.appendChild(o);
      }
    }
  }

  function fillKinds(kinds) {
    if (state.kindsFilled) return;
    state.kindsFilled = true;
    for (const k of kinds) {
      const o = document.createElement("option");
      o.value = k;
      o.textContent = k;
      $("filter-kind").appendChild(o);
    }
  }

  // ---- the stream --------------------------------------------------------
  function streamQuery() {
    const q = new URLSearchParams();
    const add = (name, value) => { if (value) q.set(name, value); };
    add("app", $("filter-app").value);
    add("channel", $("filter-channel").value);
    add("event", $("filter-event").value);
    add("kind", $("filter-kind").value);
    return q.toString();
  }

  async function startStream() {
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    state.dropped = { at_buffers: 0, skipped: 0 };
    showNotice();
    let res;
    try {
      res = await fetch("/console/stream?" + streamQuery(), {
        headers: authHeaders(), signal: controller.signal, cache: "no-store",
      });
    } catch (e) {
      if (!controller.signal.aborted) retry(controller, "connection failed");
      return;
    }
    if (res.status === 401) return signOut("the token was refused");
    if (!res.ok) {
      let why = "the server answered " + res.status;
      try { why = (await res.json()).error || why; } catch (e) { /* not JSON */ }
      $("notice").textContent = why;
      return;
    }
    setStatus("live");
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        // A stream replaced meanwhile (new filters) shows nothing more.
        if (state.controller !== controller) return;
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line) handle(JSON.parse(line));
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    if (!controller.signal.aborted) retry(controller, "stream ended");
  }

  function retry(controller, why) {
    setStatus(why + "; reconnecting");
    setTimeout(() => { if (state.controller === controller && state.token) startStream(); }, 2000);
  }

  function handle(msg) {
    switch (msg.type) {
      case "hello":
        fillApps(msg.apps);
        fillKinds(msg.kinds);
        setupCharts(msg.shards);
        break;
      case "event":
        if (state.paused) {
          state.pending.push(msg);
          if (state.pending.length > state.cap) { state.pending.shift(); state.pendingLost++; }
          showNotice();
        } else {
          addRow(msg);
        }
        break;
      case "stats":
        updateCharts(msg);
        updateBusiest(msg.busiest);
        break;
      case "dropped":
        state.dropped = msg;
        showNotice();
        break;
    }
  }

  function showNotice() {
    const parts = [];
    const d = state.dropped;
    if (d.at_buffers > 0) parts.push(d.at_buffers + " events dropped at the server's buffers (too many to collect)");
    if (d.skipped > 0) parts.push(d.skipped + " events skipped by this stream (more than it sends per second, or read too slowly)");
    if (state.paused) parts.push("paused: " + state.pending.length + " events waiting" + (state.pendingLost ? ", " + state.pendingLost + " discarded" : ""));
    $("notice").textContent = parts.join("; ");
  }

  // ---- the events table --------------------------------------------------
  function details(m) {
    const out = [];
    if (m.socket_id) out.push((m.kind === "api_message" ? "except " : "socket ") + m.socket_id);
    if (m.code !== undefined) out.push("code " + m.code);
    if (m.user_id) out.push("user " + m.user_id);
    if (m.event) out.push("event " + m.event);
    if (m.bytes !== undefined) out.push(m.bytes + " bytes");
    if (m.url) out.push(m.url + " [" + m.events.join(", ") + "]");
    if (m.error) out.push(m.error);
    if (m.data !== undefined) out.push("data " + m.data);
    return out.join(" · ");
  }

  function addRow(m) {
    const tr = document.createElement("tr");
    tr.className = m.kind;
    const cells = [
      new Date(m.t).toISOString().slice(11, 23),
      m.app === null ? "?" : m.app,
      m.shard === null ? "-" : String(m.shard),
      m.kind,
      m.channel !== null ? m.channel : (m.kind === "api_message" ? m.channels.join(", ") : ""),
      details(m),
    ];
    const names = ["time", "app", "shard", "kind", "channel", "details"];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.className = names[i];
      td.textContent = text; // text, never markup: payloads are data
      tr.appendChild(td);
    });
    const body = $("events").tBodies[0];
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > state.cap) body.deleteRow(body.rows.length - 1);
  }

  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("events").tBodies[0].replaceChildren();
    startStream();
  });
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    if (!state.paused) {
      const waiting = state.pending;
      state.pending = [];
      state.pendingLost = 0;
      waiting.forEach(addRow);
    }
    showNotice();
  });
  $("clear").addEventListener("click", () => $("events").tBodies[0].replaceChildren());
  $("cap").addEventListener("change", () => {
    const n = parseInt($("cap").value, 10);
    state.cap = Math.max(10, Math.min(10000, isNaN(n) ? 500 : n));
    $("cap").value = state.cap;
    const body = $("events").tBodies[0];
    while (body.rows.length > state.cap) body.deleteRow(body.rows.length - 1);
  });

  // ---- charts ------------------------------------------------------------
  const COLORS = ["#0b5cad", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0f766e", "#a16207", "#be185d"];

  function setupCharts(shards) {
    if (state.charts && state.shards === shards) return;
    for (const id of ["chart-connections", "chart-in", "chart-out"]) $(id).replaceChildren();
    state.shards = shards;
    const seriesOpts = [{}];
    for (let i = 0; i < shards; i++) {
      seriesOpts.push({ label: "shard " + i, stroke: COLORS[i % COLORS.length], width: 1 });
    }
    seriesOpts.push({ label: "total", stroke: "#1d2330", width: 2 });
    const make = (id) => {
      const el = $(id);
      const opts = {
        width: Math.max(320, el.clientWidth || 360), height: 180,
        series: seriesOpts.map((s) => Object.assign({}, s)),
        axes: [{}, { size: 50 }],
        legend: { live: false },
      };
      const data = [[]];
      for (let i = 0; i <= shards; i++) data.push([]);
      return { el, plot: new uPlot(opts, data, el), data };
    };
    state.charts = {
      connections: make("chart-connections"),
      in: make("chart-in"),
      out: make("chart-out"),
    };
  }

  function push(chart, t, values) {
    chart.data[0].push(t);
    let total = 0;
    values.forEach((v, i) => {
      chart.data[i + 1].push(v);
      total += v === null ? 0 : v;
    });
    chart.data[values.length + 1].push(total);
    if (chart.data[0].length > WINDOW_POINTS) chart.data.forEach((s) => s.shift());
    chart.plot.setData(chart.data);
    chart.el.dataset.points = String(chart.data[0].length);
    chart.el.dataset.last = String(total);
  }

  function updateCharts(msg) {
    if (!state.charts) setupCharts(msg.shards.length);
    const t = msg.t / 1000;
    const pick = (f) => msg.shards.map((s) => (s === null ? null : f(s)));
    push(state.charts.connections, t, pick((s) => s.connections));
    push(state.charts.in, t, pick((s) => s.messages_in + s.api_messages));
    push(state.charts.out, t, pick((s) => s.deliveries));
  }

  function updateBusiest(list) {
    const body = $("busiest").tBodies[0];
    body.replaceChildren();
    for (const c of list) {
      const tr = document.createElement("tr");
      for (const text of [c.app, c.channel, String(c.subscribers)]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  // ---- Event Creator -----------------------------------------------------
  $("creator").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const result = $("creator-result");
    result.className = "";
    const dataText = $("creator-data").value;
    try {
      JSON.parse(dataText);
    } catch (e) {
      result.className = "error";
      result.textContent = "data is not valid JSON: " + e.message;
      return;
    }
    const body = {
      name: $("creator-event").value,
      channel: $("creator-channel").value,
      data: dataText,
    };
    const socketId = $("creator-socket").value.trim();
    if (socketId) body.socket_id = socketId;
    const app = encodeURIComponent($("creator-app").value);
    let res;
    try {
      res = await fetch("/console/apps/" + app + "/events", {
        method: "POST",
        headers: authHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      result.className = "error";
      result.textContent = "cannot reach the server: " + e.message;
      return;
    }
    if (res.status === 401) return signOut("the token was refused");
    if (res.ok) {
      result.textContent = "sent";
    } else {
      let why = "the server answered " + res.status;
      try { why = (await res.json()).error || why; } catch (e) { /* not JSON */ }
      result.className = "error";
      result.textContent = why;
    }
  });
})();
