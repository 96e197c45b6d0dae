// The Edge Sync operator dashboard. Everything it shows is put into the page as text
// (textContent, never innerHTML), so data from providers cannot become markup or script.
// The operator's token is sent once, to sign in; afterwards the page holds only the
// session's CSRF token, and the session itself lives in an HttpOnly cookie.
"use strict";

let csrf = null;
let socket = null;

const $ = (id) => document.getElementById(id);

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

// Times in the viewer's own time zone.
function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

function say(text, isError = false) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf || "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { showSignIn("Your session ended: sign in again."); throw new Error("signed out"); }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
  return data;
}

const api = (method, path, body) => call(method, `/dashboard/api${path}`, body);

function fill(tbody, rows, columns, emptyText) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = el("tr");
    const td = el("td", emptyText, { colspan: String(columns) });
    td.className = "empty";
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = el("tr");
    for (const cell of cells) {
      const td = el("td");
      if (cell instanceof Node) td.append(cell); else td.textContent = cell ?? "—";
      tr.append(td);
    }
    tbody.append(tr);
  }
}

function button(label, onClick, name) {
  const b = el("button", label, { type: "button" });
  if (name) b.setAttribute("aria-label", name);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await onClick(); } catch (e) { if (e.message !== "signed out") say(e.message, true); }
    finally { b.disabled = false; }
  });
  return b;
}

async function syncSummary(id) {
  try {
    const states = await api("GET", `/coordinator/connections/${encodeURIComponent(id)}/sync`);
    return states.resources.map((r) => {
      const run = r.last_run || {};
      const records = run.records ?? run.result?.records ?? "";
      const error = run.error ? `, error: ${run.error}` : "";
      const at = r.cursor ? `, cursor at ${when(r.cursor.updated_at)}` : "";
      return `${r.resource}: ${run.state || run.status || "—"}${records !== "" ? ` (${records})` : ""}${at}${error}`;
    }).join(", ") || "not synced yet";
  } catch { return "—"; }
}

// Live sync progress per connection and resource, as the stream reports pages committing.
const progress = new Map();

function syncCell(id, summary) {
  const cell = el("span", summary, { id: `sync-${id}`, "data-sync": id });
  return cell;
}

function showProgress(message) {
  const cell = document.getElementById(`sync-${message.connection_id}`);
  if (!cell) return;
  progress.set(`${message.connection_id}/${message.resource}`, message);
  const parts = [...progress.values()]
    .filter((m) => m.connection_id === message.connection_id)
    .map((m) => `${m.resource}: ${m.state} (${m.records})`);
  cell.textContent = parts.join(", ");
}

// Where a connection's OAuth flow starts (a new connection, or a re-authorization).
function authorizePath(provider, user, shop) {
  return provider === "keap"
    ? `/oauth/initiate?user_id=${encodeURIComponent(user)}`
    : `/oauth/shopify/install?user_id=${encodeURIComponent(user)}&shop=${encodeURIComponent(shop)}`;
}

async function authorize(provider, user, shop) {
  const answer = await api("GET", authorizePath(provider, user, shop));
  location.assign(answer.authorize_url);
}

function syncButtons(c) {
  const box = el("span");
  for (const mode of ["incremental", "full"]) {
    box.append(button(mode === "full" ? "Full sync" : "Sync now", async () => {
      await api("POST", `/sync/full?connection=${encodeURIComponent(c.id)}&mode=${mode}`);
      say(`${mode === "full" ? "Full" : "Incremental"} sync of ${c.account} started.`);
    }, `${mode} sync of ${c.account}`));
  }
  return box;
}

async function loadConnections() {
  const { connections, repositories } = await api("GET", "/coordinator/connections");
  const rows = [];
  for (const c of connections) {
    const sync = el("span");
    sync.append(syncCell(c.id, await syncSummary(c.id)), el("br"), syncButtons(c));
    const status = el("span", c.status);
    if (c.status !== "active") {
      status.append(el("br"), button("Re-authorize", () => authorize(c.provider, c.user_id, c.account),
        `Re-authorize ${c.account}`));
    }
    rows.push([c.provider, c.account, c.user_id, status, when(c.access_expires_at),
      c.last_error || "—", sync,
      button("Delete", async () => {
        if (!confirm(`Delete the ${c.provider} connection ${c.account}?`)) return;
        await api("DELETE", `/coordinator/connections/${encodeURIComponent(c.id)}`);
        say(`Deleted ${c.account}.`);
        await loadConnections();
      }, `Delete ${c.account}`)]);
  }
  loadPropagation(connections).catch((e) => { if (e.message !== "signed out") $("propagation-health").textContent = e.message; });
  fill($("connections").tBodies[0], rows, 8,
    "No connections yet: connect Keap or Shopify above.");
  fill($("repositories").tBodies[0], (repositories || []).map((r) => [
    r.provider, r.repository, r.user_id, r.status,
    r.webhook_id ? "registered" : (r.webhook_error || "none"), when(r.last_poll_at), r.last_error || "—",
  ]), 7, "No repositories: POST /coordinator/connections with provider github, gitlab or bitbucket.");
}

// Real-time propagation: its health, and what the Shopify sources propagated lately.
async function loadPropagation(connections) {
  const health = await api("GET", "/realtime-sync/health");
  const hour = health.last_hour || {};
  $("propagation-health").textContent = `Status ${health.status}: ${health.unplanned_changes ?? 0} changes waiting; `
    + `last hour ${hour.written ?? 0} written, ${hour.retrying ?? 0} retrying, ${hour.dead ?? 0} dead.`;
  const rows = [];
  for (const c of connections.filter((c) => c.provider === "shopify")) {
    const { activity } = await api("GET", `/realtime-sync/activity/${encodeURIComponent(c.id)}`);
    for (const a of activity || []) {
      rows.push([when(a.updated_at), a.event_type, c.account, a.target_connection_id, a.action, a.result, a.error || "—"]);
    }
  }
  fill($("propagation").tBodies[0], rows.slice(0, 50), 7,
    "Nothing propagated: enable it with POST /realtime-sync/enable/{connection_id}.");
}

async function loadEvents() {
  const { events } = await api("GET", "/coordinator/events");
  fill($("events").tBodies[0], events.map((e) => [
    when(e.received_at), e.event_type || "—", e.source, e.state, String(e.attempts), e.last_error || "—",
    e.state === "dead"
      ? button("Replay", async () => {
        await api("POST", `/coordinator/events/${encodeURIComponent(e.id)}/replay`);
        say("Replayed: it will be delivered again.");
        await loadEvents();
      }, `Replay ${e.event_type || e.id}`)
      : "",
  ]), 7, "Nothing waiting: every accepted event reached Postgres.");
}

async function loadStoredEvents() {
  const user = $("user").value.trim();
  const { events } = await api("GET", `/coordinator/events/recent?user_id=${encodeURIComponent(user)}&limit=25`);
  fill($("stored-events").tBodies[0], (events || []).map((e) => [
    when(e.received_at), e.event_type, e.source, e.state, e.processing_note || "—",
  ]), 5, "No events for this user yet: they arrive by webhook, polling and the event loop.");
}

// Markdown shown safely: headings, list items and paragraphs, each as text.
function markdown(text) {
  const box = el("div");
  box.className = "markdown";
  let list = null;
  for (const line of String(text || "").split("\n")) {
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    const item = line.match(/^\s*[-*]\s+(.*)$/);
    if (item) {
      if (!list) { list = el("ul"); box.append(list); }
      list.append(el("li", item[1]));
      continue;
    }
    list = null;
    if (heading) box.append(el("h4", heading[2]));
    else if (line.trim() !== "") box.append(el("p", line));
  }
  return box;
}

async function loadSuggestions() {
  const user = $("user").value.trim();
  const { suggestions } = await api("GET", `/coordinator/suggestions?user_id=${encodeURIComponent(user)}`);
  const list = $("suggestions");
  list.replaceChildren();
  if (suggestions.length === 0) {
    list.append(el("li", "No suggestions for this user yet: they appear as events are processed."));
    return;
  }
  for (const s of suggestions.slice(0, 50)) {
    const item = el("li");
    item.append(el("h3", s.title || s.event_type));
    item.append(el("p", `${s.event_type} · ${s.importance} · ${s.status} · ${when(s.created_at)}`));
    item.append(markdown(s.markdown || s.text));
    if (s.status === "new") {
      for (const action of ["accept", "dismiss"]) {
        item.append(button(action === "accept" ? "Accept" : "Dismiss", async () => {
          await api("POST", `/coordinator/suggestions/${encodeURIComponent(s.id)}/${action}`);
          say(`Suggestion ${action === "accept" ? "accepted" : "dismissed"}.`);
          await loadSuggestions();
        }, `${action} ${s.title || s.event_type}`));
      }
    }
    list.append(item);
  }
}

async function loadLoop() {
  const user = $("user").value.trim();
  const status = await api("GET", `/coordinator/event-loop/${encodeURIComponent(user)}`);
  const box = $("loop");
  box.replaceChildren(el("p", status.running
    ? `Running every ${status.interval_secs} s; last tick ${when(status.last_tick_at)}; ${status.ticks} ticks.`
    : "Not running: start it to watch schemas, migrations, shops and repositories."));
  const watchers = el("ul");
  for (const [name, w] of Object.entries(status.watchers || {})) {
    watchers.append(el("li", `${name}: last ok ${when(w.last_ok_at)}, found ${w.total_found}${w.last_error ? `, error: ${w.last_error}` : ""}`));
  }
  box.append(watchers);
}

function addRecent(text) {
  const feed = $("recent");
  feed.prepend(el("li", `${new Date().toLocaleTimeString()} ${text}`));
  while (feed.children.length > 50) feed.lastChild.remove();
}

function onLive(message) {
  let data;
  try { data = JSON.parse(message.data); } catch { return; }
  if (data.type === "event") {
    addRecent(`${data.event_type} from ${data.source}`);
    loadEvents().catch(() => {});
    loadStoredEvents().catch(() => {});
  }
  else if (data.type === "suggestion") {
    addRecent(`suggestion: ${data.title}`);
    loadSuggestions().catch(() => {});
    loadStoredEvents().catch(() => {});
  }
  else if (data.type === "sync_progress") showProgress(data);
  else if (data.type === "propagation") { addRecent(`propagation: ${data.action || ""} ${data.result || ""}`); loadConnections().catch(() => {}); }
  else addRecent(data.type);
}

function liveState(on) {
  const badge = $("live");
  badge.textContent = on ? "live" : "offline";
  badge.className = on ? "badge on" : "badge";
}

async function ticket() {
  const user = $("user").value.trim();
  return api("POST", `/coordinator/users/${encodeURIComponent(user)}/live/ticket`);
}

// The user's live stream: events and suggestions appear without reloading. A WebSocket,
// or Server-Sent Events where a WebSocket cannot open (a proxy that drops upgrades).
async function connectLive() {
  if (socket) { socket.onclose = null; socket.onerror = null; socket.close(); socket = null; }
  try {
    const first = await ticket();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let opened = false;
    const ws = new WebSocket(`${scheme}://${location.host}${first.path}?ticket=${encodeURIComponent(first.ticket)}`);
    socket = ws;
    ws.onopen = () => { opened = true; liveState(true); };
    ws.onmessage = onLive;
    ws.onerror = async () => {
      if (opened || socket !== ws) return;
      ws.onclose = null;
      const second = await ticket();
      const events = new EventSource(`${second.path}?ticket=${encodeURIComponent(second.ticket)}`);
      socket = events;
      events.onopen = () => liveState(true);
      events.onmessage = onLive;
      events.onerror = () => { liveState(false); events.close(); if (csrf) setTimeout(connectLive, 3000); };
    };
    ws.onclose = () => { liveState(false); if (csrf && socket === ws) setTimeout(connectLive, 3000); };
  } catch (e) {
    liveState(false);
    if (csrf && e.message !== "signed out") setTimeout(connectLive, 5000);
  }
}

async function loadAll() {
  const results = await Promise.allSettled([
    loadConnections(), loadEvents(), loadSuggestions(), loadStoredEvents(), loadLoop(),
  ]);
  const failed = results.find((r) => r.status === "rejected" && r.reason.message !== "signed out");
  if (failed) say(failed.reason.message, true);
}

function showSignIn(reason) {
  csrf = null;
  if (socket) { socket.onclose = null; socket.onerror = null; socket.close(); socket = null; }
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in-panel").hidden = false;
  $("sign-in-error").textContent = reason || "";
  $("token").focus();
}

function showApp() {
  $("sign-in-panel").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  loadAll();
  connectLive();
}

document.addEventListener("DOMContentLoaded", async () => {
  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch("/dashboard/session", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("token").value }),
    });
    $("token").value = "";
    if (!response.ok) { $("sign-in-error").textContent = "That is not the operator token."; return; }
    csrf = (await response.json()).csrf;
    showApp();
  });
  $("sign-out").addEventListener("click", async () => {
    try { await call("POST", "/dashboard/logout"); } catch { /* already ended */ }
    showSignIn("Signed out.");
  });
  $("user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadSuggestions().catch((e) => say(e.message, true));
    loadStoredEvents().catch((e) => say(e.message, true));
    loadLoop().catch((e) => say(e.message, true));
    connectLive();
  });
  $("replay-since").addEventListener("submit", async (event) => {
    event.preventDefault();
    const since = new Date($("since").value).toISOString();
    try {
      const answer = await api("POST", `/coordinator/events/replay?since=${encodeURIComponent(since)}`);
      say(`Replayed ${answer.replayed ?? 0} dead letters.`);
      await loadEvents();
    } catch (e) { say(e.message, true); }
  });
  $("connect").addEventListener("submit", async (event) => {
    event.preventDefault();
    const provider = event.submitter ? event.submitter.value : "keap";
    try {
      await authorize(provider, $("connect-user").value.trim(), $("connect-shop").value.trim());
    } catch (e) { say(e.message, true); }
  });
  $("loop-start").addEventListener("click", async () => {
    try { await api("POST", `/coordinator/event-loop/${encodeURIComponent($("user").value.trim())}/start`, {}); await loadLoop(); }
    catch (e) { say(e.message, true); }
  });
  $("loop-stop").addEventListener("click", async () => {
    try { await api("POST", `/coordinator/event-loop/${encodeURIComponent($("user").value.trim())}/stop`); await loadLoop(); }
    catch (e) { say(e.message, true); }
  });
  const session = await fetch("/dashboard/session", { credentials: "same-origin" });
  if (session.ok) { csrf = (await session.json()).csrf; showApp(); } else showSignIn();
});
