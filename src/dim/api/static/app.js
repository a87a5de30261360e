// dim's dashboard: the cluster at a glance, a node's page, images and their versions, and the
// live event feed. Plain JavaScript, no build step; every value shown is set as text, never
// as markup (node names and event details come from the cluster, not from dim).
"use strict";

const API = "/api/v1";
const KEY = "dim-token";
const COLOURS = {up: "#2e7d32", booting: "#f9a825", down: "#c62828", off: "#616161",
                 unknown: "#bdbdbd"};
const CELL = 10, GAP = 2, LABEL = 18;
const REFRESH = 5000;  // ms: sessions come and go without an event

let token = null, role = null, status = null, filter = "", cells = [], refreshing = null;
let started = false;

// -- signing in: /#token=TOKEN, kept for this tab, and the fragment dropped from the address
function takeToken() {
  const found = location.hash.match(/^#token=([^&]+)/);
  if (found) {
    sessionStorage.setItem(KEY, decodeURIComponent(found[1]));
    history.replaceState(null, "", location.pathname + location.search + "#/");
  }
  return sessionStorage.getItem(KEY);
}

async function api(path, options = {}) {
  const headers = {Authorization: `Bearer ${token}`};
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(API + path, {
    method: options.method || "GET", headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const data = await answer.json();
  if (answer.status === 401) { signIn("the token was refused: " + data.error); throw data; }
  if (!answer.ok) throw data;
  return data;
}

function signIn(message) {
  sessionStorage.removeItem(KEY);
  document.getElementById("signin-error").textContent = message || "";
  const dialog = document.getElementById("signin");
  if (!dialog.open) dialog.showModal();
}

document.getElementById("signin-form").addEventListener("submit", () => {
  sessionStorage.setItem(KEY, document.getElementById("token-input").value.trim());
  start();
});

// -- small helpers for building the page from text
function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function table(headers, rows) {
  const t = el("table");
  const head = t.insertRow();
  for (const h of headers) head.appendChild(el("th", h));
  for (const row of rows) {
    const r = t.insertRow();
    for (const cell of row) {
      const td = r.insertCell();
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell ?? "-";
    }
  }
  return t;
}

function link(text, hash) { return el("a", text, {href: hash}); }
function when(seconds) { return seconds ? new Date(seconds * 1000).toLocaleString() : "-"; }
function main() { const m = document.getElementById("main"); m.replaceChildren(); return m; }

// -- the cluster: nodes by group, a grid coloured by state, filtered by a node set
async function showCluster() {
  const m = main();
  const form = el("form");
  const input = el("input", null, {id: "filter", placeholder: "node set: @rack1, n[01-40]",
                                   size: "40", value: filter});
  form.append(input, el("button", "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault(); filter = input.value.trim(); refreshStatus();
  });
  m.append(form, el("p", null, {id: "counts", class: "counts"}), el("p", null, {id: "problem", class: "error"}));
  const canvas = el("canvas", null, {id: "grid"});
  m.appendChild(canvas);
  canvas.addEventListener("mousemove", hover);
  canvas.addEventListener("mouseleave", () => { document.getElementById("tip").hidden = true; });
  canvas.addEventListener("click", (event) => {
    const cell = cellAt(event);
    if (cell) location.hash = "#/node/" + encodeURIComponent(cell.name);
  });
  if (status) draw(); else await refreshStatus();
}

async function refreshStatus() {
  const query = filter ? "?nodeset=" + encodeURIComponent(filter) : "";
  try {
    status = await api("/status" + query);
    const problem = document.getElementById("problem");
    if (problem) problem.textContent = "";
  } catch (error) {
    const problem = document.getElementById("problem");
    if (problem) problem.textContent = error.error || String(error);
    return;
  }
  if (document.getElementById("grid")) draw();
}

function draw() {
  const canvas = document.getElementById("grid");
  const counts = document.getElementById("counts");
  counts.replaceChildren();
  for (const [state, count] of Object.entries(status.counts)) {
    const item = el("span");
    item.append(el("span", null, {class: "swatch " + state}), `${count} ${state}`);
    item.dataset.state = state;
    item.dataset.count = count;
    counts.appendChild(item);
  }
  if (!status.sessions_known) counts.appendChild(el("span", "(no NFS server's sessions readable)"));
  const width = Math.max(300, canvas.parentElement.clientWidth);
  const perRow = Math.max(1, Math.floor(width / (CELL + GAP)));
  const groups = new Map();
  for (const node of status.nodes) {
    if (!groups.has(node.group)) groups.set(node.group, []);
    groups.get(node.group).push(node);
  }
  let height = 0;
  for (const nodes of groups.values()) height += LABEL + Math.ceil(nodes.length / perRow) * (CELL + GAP);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = width * ratio; canvas.height = Math.max(height, 1) * ratio;
  canvas.style.width = width + "px"; canvas.style.height = Math.max(height, 1) + "px";
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.font = "12px system-ui, sans-serif";
  cells = [];
  let y = 0;
  for (const [group, nodes] of groups) {
    g.fillStyle = "#222";
    g.fillText(`${group} (${nodes.length})`, 0, y + 13);
    y += LABEL;
    nodes.forEach((node, i) => {
      const x = (i % perRow) * (CELL + GAP), top = y + Math.floor(i / perRow) * (CELL + GAP);
      g.fillStyle = COLOURS[node.state] || COLOURS.unknown;
      g.fillRect(x, top, CELL, CELL);
      cells.push({x, y: top, node});
    });
    y += Math.ceil(nodes.length / perRow) * (CELL + GAP);
  }
  // for people who script the page, and for its tests: what is drawn, and when
  document.body.dataset.nodes = String(status.nodes.length);
  document.body.dataset.drawnAt = String(performance.now());
  for (const cell of cells) if (cell.node.name === document.body.dataset.watch) {
    document.body.dataset.watchedState = cell.node.state;
  }
}

function cellAt(event) {
  const box = event.target.getBoundingClientRect();
  const x = event.clientX - box.left, y = event.clientY - box.top;
  // cells are laid out in rows: a scan of 10,000 is well under a millisecond
  return cells.find((c) => x >= c.x && x < c.x + CELL && y >= c.y && y < c.y + CELL);
}

function hover(event) {
  const tip = document.getElementById("tip");
  const cell = cellAt(event);
  if (!cell) { tip.hidden = true; return; }
  const n = cell.node;
  tip.textContent = `${n.name}: ${n.state}, ${n.image}` + (n.session ? ` via ${n.session}` : "") + (n.session_server ? ` (${n.session_server})` : "");
  tip.style.left = event.clientX + 12 + "px";
  tip.style.top = event.clientY + 12 + "px";
  tip.hidden = false;
}

// -- one node
async function showNode(name) {
  const m = main();
  m.appendChild(el("h2", name));
  let node;
  try { node = await api("/nodes/" + encodeURIComponent(name)); } catch (error) {
    m.appendChild(el("p", error.error || String(error), {class: "error"})); return;
  }
  const s = node.status;
  const booted = node.last_boot;
  m.appendChild(table(["", ""], [
    ["state", s.state], ["group", node.group], ["image (next boot)", node.image],
    ["booted", booted ? `${booted.image} (boot build ${booted.version}) at ${booted.at} from ${booted.client}` : "-"],
    ["live version it sees", s.live_version], ["NFS session with", s.session && `${s.session}` + (s.session_server ? ` (${s.session_server})` : "")],
    ["server", node.server], ["BMC", node.bmc ? `${node.bmc.driver} ${node.bmc.address}` : "-"],
  ]));
  m.appendChild(el("h3", "Interfaces"));
  m.appendChild(table(["network", "address", "host name", "MAC"],
    node.interfaces.map((i) => [i.network, i.ip, i.hostname, i.mac])));
  m.appendChild(el("h3", "Power"));
  const result = el("div", null, {id: "power-result"});
  const buttons = el("p");
  const ask = el("button", "Ask the BMC", {id: "power-status"});
  ask.addEventListener("click", () => runJob(`/nodes/${encodeURIComponent(name)}/power-status`, undefined, result));
  buttons.appendChild(ask);
  if (role === "admin") {
    for (const action of ["on", "off", "reset", "cycle", "soft"]) {
      const button = el("button", "Power " + action, {id: "power-" + action});
      button.addEventListener("click", () => {
        if (!confirm(`Power ${action} ${name}?`)) return;
        runJob(`/nodes/${encodeURIComponent(name)}/power`, {action}, result);
      });
      buttons.appendChild(button);
    }
  } else {
    buttons.appendChild(el("span", "power actions need an admin's token", {class: "muted"}));
  }
  m.append(buttons, result);
  m.appendChild(el("h3", "Last boots and events"));
  m.appendChild(table(["when", "event", "detail", "by"],
    node.events.map((e) => [when(e.at), e.kind, e.detail, e.actor || "-"])));
  m.appendChild(el("h3", "Persistent-path conflicts"));
  m.appendChild(s.conflicts.length
    ? table(["path its replica kept against the image's changes"], s.conflicts.map((p) => [p]))
    : el("p", "none", {class: "muted", id: "no-conflicts"}));
}

async function runJob(path, body, where) {
  where.replaceChildren(el("p", "…"));
  try {
    const started = await api(path, {method: "POST", body: body === undefined ? {} : body});
    let job = await api("/jobs/" + started.job);
    while (job.state === "running") {
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = await api("/jobs/" + started.job);
    }
    where.replaceChildren(el("p", `${job.kind}: ${job.state}` + (job.error ? ": " + job.error : ""),
                             {id: "job-state"}),
      table(["node", "outcome", "message"], job.results.map((r) => [r.node, r.outcome, r.message])));
  } catch (error) {
    where.replaceChildren(el("p", error.error || String(error), {class: "error", id: "job-error"}));
  }
}

// -- images and their versions
async function showImages() {
  const m = main();
  m.appendChild(el("h2", "Images"));
  const {images} = await api("/images");
  m.appendChild(table(["image", "versions", "live", "nodes", "replicas"], images.map((i) => [
    link(i.name, "#/images/" + encodeURIComponent(i.name)), i.versions.length, i.live, i.nodes,
    i.replicas])));
}

async function showImage(name) {
  const m = main();
  m.appendChild(el("h2", name));
  let image;
  try { image = await api("/images/" + encodeURIComponent(name)); } catch (error) {
    m.appendChild(el("p", error.error || String(error), {class: "error"})); return;
  }
  m.appendChild(el("p", `live version ${image.live ?? "-"}, used by ${image.nodes || "no node"}`));
  const diff = el("pre", null, {id: "diff"});
  m.appendChild(table(["version", "when", "from", "changes", ""], image.history.map((v) => {
    const button = el("button", v.version > 1 ? `diff ${v.version - 1} → ${v.version}` : "");
    if (v.version > 1) {
      button.addEventListener("click", async () => {
        const d = await api(`/images/${encodeURIComponent(name)}/diff?from=${v.version - 1}&to=${v.version}`);
        diff.textContent = [...d.added.map((p) => "+ " + p), ...d.changed.map((p) => "~ " + p),
                            ...d.removed.map((p) => "- " + p)].join("\n") || "(no change)";
      });
    } else { button.hidden = true; }
    const changes = v.added === undefined ? "-" : `+${v.added} ~${v.changed} -${v.removed}`;
    return [v.version, when(v.created), v.source || "-", changes, button];
  })));
  m.appendChild(diff);
}

// -- the live feed: Server-Sent Events read through fetch, which can send the token
async function feed() {
  const list = document.getElementById("events");
  const live = document.getElementById("live");
  let after = null;
  for (;;) {
    try {
      const query = after === null ? "" : "?after=" + after;
      const answer = await fetch(API + "/events/stream" + query,
                                 {headers: {Authorization: `Bearer ${token}`}});
      if (!answer.ok) throw new Error("feed: " + answer.status);
      live.textContent = "●"; live.classList.add("on");
      const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = message.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (!data) continue;
          const event = JSON.parse(data);
          after = event.id;
          const item = el("li", `${when(event.at)} ${event.node || ""} ${event.kind} ${event.detail}` +
                                (event.actor ? ` (${event.actor})` : ""));
          list.prepend(item);
          while (list.children.length > 200) list.lastChild.remove();
          scheduleRefresh();
        }
      }
    } catch (error) { /* the service restarted, or the network: try again */ }
    live.textContent = "○"; live.classList.remove("on");
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

function scheduleRefresh() {
  if (refreshing) return;
  refreshing = setTimeout(() => { refreshing = null; if (document.getElementById("grid")) refreshStatus(); }, 500);
}

// -- routes: #/ the cluster, #/node/NAME, #/images, #/images/NAME
function route() {
  const hash = location.hash || "#/";
  let found;
  if ((found = hash.match(/^#\/node\/(.+)$/))) return showNode(decodeURIComponent(found[1]));
  if ((found = hash.match(/^#\/images\/(.+)$/))) return showImage(decodeURIComponent(found[1]));
  if (hash === "#/images") return showImages();
  return showCluster();
}

async function start() {
  token = takeToken();
  if (!token) { signIn(); return; }
  let me;
  try { me = await api("/whoami"); } catch (error) { return; }
  const dialog = document.getElementById("signin");
  if (dialog.open) dialog.close();
  role = me.role;
  document.getElementById("who").textContent = `${me.name} (${me.role})`;
  if (started) { route(); return; }
  started = true;
  window.addEventListener("hashchange", route);
  route();
  feed();
  setInterval(() => { if (document.getElementById("grid")) refreshStatus(); }, REFRESH);
}

start();
