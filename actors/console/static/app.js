// The Sensorium console page: plain JavaScript over the console's WebSocket API (docs/api.md).
"use strict";
const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, ...kids) => { const {dataset, ...rest} = props;
  const e = Object.assign(document.createElement(tag), rest); Object.assign(e.dataset, dataset || {});
  kids.forEach(k => e.append(k)); return e; };
let ws = null, nextId = 1;
const waiting = new Map();
const handlers = { message: onMessage, job: onJob, record: onRecord, practice: onPractice };
let token = localStorage.getItem("sensorium.token") || "";

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.onopen = async () => {
    $("#conn").textContent = "connected"; $("#conn").className = "badge ok";
    if (token) { try { await call("auth", {}, token); } catch (e) { say(e.message); } }
    for (const [topic, hz] of Object.entries(wanted)) call("subscribe", {topic, max_hz: hz}).catch(e => say(e.message));
    refreshActors(); refreshModels(); refreshGestures(); refreshJobs();
  };
  ws.onclose = () => { $("#conn").textContent = "disconnected"; $("#conn").className = "badge bad";
    waiting.forEach(w => w.reject(new Error("connection closed"))); waiting.clear(); setTimeout(connect, 2000); };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type) { (handlers[m.type] || (() => {}))(m); return; }
    const w = waiting.get(m.id); if (!w) return; waiting.delete(m.id);
    if (m.error) w.reject(new Error(`${m.error.code}: ${m.error.message}`)); else w.resolve(m.result);
  };
}
function call(cmd, args = {}, tok) {
  return new Promise((resolve, reject) => {
    if (!ws || ws.readyState !== 1) { reject(new Error("not connected")); return; }
    const id = nextId++; waiting.set(id, {resolve, reject});
    const req = {id, cmd, args}; if (tok) req.token = tok;
    ws.send(JSON.stringify(req));
  });
}
function say(text, ok = false) { $("#message").textContent = text; $("#message").className = ok ? "ok" : ""; }
async function act(cmd, args, okText) {
  try { const r = await call(cmd, args); if (okText) say(okText(r), true); return r; } catch (e) { say(e.message); }
}

// -- tabs and token
document.querySelectorAll("nav button").forEach(b => b.onclick = () => {
  document.querySelectorAll("nav button, .tab").forEach(x => x.classList.remove("on"));
  b.classList.add("on"); $("#" + b.dataset.tab).classList.add("on");
});
$("#tokenForm").onsubmit = async (ev) => { ev.preventDefault(); token = $("#token").value.trim();
  localStorage.setItem("sensorium.token", token);
  try { await call("auth", {}, token); say("token accepted", true); } catch (e) { say(e.message); } };

// -- actors
async function refreshActors() {
  let r; try { r = await call("actors"); } catch (e) { return; }
  const body = $("#actorTable tbody"); body.replaceChildren();
  for (const a of r.actors) {
    const rate = Object.values(a.rates || {}).reduce((s, x) => s + x, 0);
    const tr = el("tr", {dataset: {actor: a.name}},
      el("td", {textContent: a.name}), el("td", {textContent: a.kind || ""}),
      el("td", {textContent: a.state || "", className: "state state-" + (a.state || "")}),
      el("td", {textContent: a.restarts ?? "", className: "restarts"}),
      el("td", {textContent: a.cpu_percent != null ? a.cpu_percent.toFixed(0) : ""}),
      el("td", {textContent: a.rss ? (a.rss / 1048576).toFixed(0) : ""}),
      el("td", {textContent: rate ? rate.toFixed(1) : ""}), el("td", {className: "actions"}));
    for (const c of a.supervised === false ? [] : ["start", "stop", "restart"]) {
      tr.lastChild.append(el("button", {textContent: {start: "▶", stop: "■", restart: "↻"}[c], title: c,
        ariaLabel: `${c} ${a.name}`, className: c, onclick: () =>
        act("supervisor", {command: c, actor: a.name}, () => `${c} ${a.name}: done`).then(refreshActors)}));
    }
    body.append(tr);
  }
  $("#alerts").replaceChildren(...r.alerts.map(a => el("div", {className: "alert",
    textContent: `${a.level}: ${a.metric} ${a.actor || ""} ${a.message || ""}`})));
}
setInterval(() => { if ($("#actors").classList.contains("on")) refreshActors(); }, 2000);

// -- live views
const wanted = {"camera.frame": 5, "detect.": 10, "speech.transcript": 10, "audio.event": 10,
                "gesture.recognized": 10, "gesture.unknown": 10, "sensor.imu": 20};
const dets = {}; let lastFrame = null; const imuTrace = [];
const img = new Image();
function onMessage(m) {
  const t = m.topic, b = m.body;
  if (t === "camera.frame" && b.image && b.image.jpeg) {
    lastFrame = b; img.onload = drawCamera; img.src = "data:image/jpeg;base64," + b.image.jpeg;
  } else if (t.startsWith("detect.")) { dets[b.signal || t.slice(7)] = b; }
  else if (t === "speech.transcript") feed("#transcripts", b.text);
  else if (t === "audio.event") feed("#soundEvents", `${b.label} ${(b.score * 100).toFixed(0)}%`);
  else if (t === "gesture.recognized") feed("#gestureFeed", `${b.name} (${(b.confidence * 100).toFixed(0)}%)`);
  else if (t === "gesture.unknown") feed("#gestureFeed", `unknown (nearest ${b.nearest})`);
  else if (t === "sensor.imu" && Array.isArray(b.acc)) {
    for (const a of b.acc) imuTrace.push(a); imuTrace.splice(0, Math.max(0, imuTrace.length - 400));
    drawTrace($("#imu"), imuTrace); if (recording) drawTrace($("#recTrace"), imuTrace);
  }
}
function feed(sel, text) { const ul = $(sel); ul.prepend(el("li", {textContent: text}));
  while (ul.children.length > 50) ul.lastChild.remove(); }
function drawCamera() {
  const c = $("#camera"), g = c.getContext("2d");
  c.width = img.naturalWidth; c.height = img.naturalHeight; g.drawImage(img, 0, 0);
  g.lineWidth = 2; g.font = "12px sans-serif"; let n = 0;
  const colors = ["#ff1744", "#00e676", "#2979ff", "#ffea00", "#d500f9"];
  Object.entries(dets).forEach(([signal, d], i) => {
    g.strokeStyle = g.fillStyle = colors[i % colors.length];
    (d.boxes || []).forEach((box, k) => { const [x1, y1, x2, y2] = box; n++;
      g.strokeRect(x1, y1, x2 - x1, y2 - y1);
      g.fillText(`${signal} ${((d.scores || [])[k] * 100 || 0).toFixed(0)}%`, x1 + 2, Math.max(10, y1 - 2)); });
  });
  c.dataset.boxes = n; c.dataset.frame = lastFrame.frame_id;
  $("#camInfo").textContent = `frame ${lastFrame.frame_id}, ${lastFrame.fps.toFixed(1)} fps, ${n} boxes`;
}
function drawTrace(c, rows) {
  const g = c.getContext("2d"); g.fillStyle = "#111"; g.fillRect(0, 0, c.width, c.height);
  const colors = ["#ff5252", "#69f0ae", "#448aff"];
  for (let axis = 0; axis < 3; axis++) { g.strokeStyle = colors[axis]; g.beginPath();
    rows.forEach((r, i) => { const x = i * c.width / 400, y = c.height / 2 - r[axis] * c.height / 60;
      i ? g.lineTo(x, y) : g.moveTo(x, y); }); g.stroke(); }
}

// -- models
async function refreshModels() {
  let r; try { r = await call("models.list"); } catch (e) { return; }
  const list = $("#modelList"); list.replaceChildren();
  for (const m of r.models) {
    const box = el("div", {className: "model", dataset: {model: m.name}},
      el("strong", {textContent: m.name}), " active ", el("span", {className: "active", textContent: m.active || "-"}),
      " ", el("button", {textContent: "roll back", className: "rollback", onclick: () =>
        act("models.rollback", {signal: m.name}, x => x.reason).then(refreshModels)}));
    const table = el("table"); const curve = el("canvas", {width: 320, height: 100, className: "curve"});
    for (const v of m.versions) {
      const tr = el("tr", {dataset: {version: v.version}},
        el("td", {textContent: (v.store === "shipped" ? "v" : "") + v.version + (v.active ? " (active)" : "")}),
        el("td", {textContent: v.f1 != null ? "F1 " + v.f1.toFixed(3) : ""}),
        el("td", {textContent: v.created || "", title: v.decision || ""}), el("td"));
      tr.lastChild.append(el("button", {textContent: "promote", className: "promote", disabled: v.active, onclick: () =>
        act("models.promote", {signal: m.name, version: v.version}, x => x.reason).then(refreshModels)}));
      if (v.curve) tr.lastChild.append(el("button", {textContent: "curve", onclick: () => drawCurve(curve, v.curve)}));
      table.append(tr);
    }
    box.append(table);
    const shown = m.versions.find(v => v.active && v.curve) || [...m.versions].reverse().find(v => v.curve);
    if (shown) { box.append(curve, el("div", {className: "small", textContent:
      `training curve of ${shown.version}: validation F1 (green), training loss (red), by epoch`})); drawCurve(curve, shown.curve); }
    list.append(box);
  }
}
function drawCurve(c, curve, f1Key = "val_f1", lossKey = "train_loss") {
  const g = c.getContext("2d"); g.fillStyle = "#fff"; g.fillRect(0, 0, c.width, c.height);
  const xs = curve.epoch || curve.map((p) => p.epoch), n = xs.length; if (!n) return;
  const series = [[curve[f1Key] || curve.map(p => p.val_f1), "#2e7d32"], [curve[lossKey] || curve.map(p => p.loss), "#c62828"]];
  for (const [ys, color] of series) { const max = Math.max(1e-9, ...ys.filter(y => y != null));
    g.strokeStyle = color; g.beginPath();
    ys.forEach((y, i) => { if (y == null) return; const px = i * (c.width - 4) / Math.max(1, n - 1) + 2,
      py = c.height - 4 - y / max * (c.height - 8); i ? g.lineTo(px, py) : g.moveTo(px, py); }); g.stroke(); }
}
$("#refreshModels").onclick = refreshModels;
$("#cleanup").onclick = () => act("models.cleanup", {keep: Number($("#keep").value)},
  r => `removed ${r.removed.length}: ${r.removed.join(", ")}`).then(refreshModels);
$("#trainForm").onsubmit = (ev) => { ev.preventDefault(); const args = {signal: $("#trainSignal").value.trim(),
  data: $("#trainData").value.trim()}; if ($("#trainEpochs").value) args.epochs = Number($("#trainEpochs").value);
  act("models.train", args, j => `job ${j.id} started`).then(refreshJobs); };
const jobs = {};
async function refreshJobs() { try { (await call("jobs.list")).forEach(j => jobs[j.id] = j); } catch (e) { return; } drawJobs(); }
function onJob(m) { jobs[m.job.id] = m.job; drawJobs(); if (["done", "failed"].includes(m.job.state)) refreshModels(); }
function drawJobs() {
  $("#jobs").replaceChildren(...Object.values(jobs).sort((a, b) => b.created - a.created).slice(0, 10).map(j => {
    const p = j.progress || {}, r = j.result || {};
    const box = el("div", {className: "job", dataset: {job: j.id, state: j.state}},
      el("div", {textContent: `${j.signal}: ${j.state}` + (p.epoch ? ` — epoch ${p.epoch}/${p.epochs}, loss ${p.loss}, val F1 ${p.val_f1}` : "")}),
      el("progress", {max: 100, value: j.state === "done" ? 100 : (p.percent || 0)}));
    if (r.decision) box.append(el("div", {className: "decision", textContent: `${r.version}: ${r.decision}`}));
    if (j.error) box.append(el("div", {className: "small", textContent: j.error}));
    if (j.state === "running") box.append(el("button", {textContent: "cancel", onclick: () => act("jobs.cancel", {job: j.id})}));
    const c = el("canvas", {width: 320, height: 80}); box.append(c);
    if ((j.curve || []).length) drawCurve(c, j.curve, "val_f1", "loss");
    return box;
  }));
}

// -- gestures
async function refreshGestures() {
  let r; try { r = await call("gestures.list"); } catch (e) { return; }
  const body = $("#gestureTable tbody"); body.replaceChildren();
  const pct = x => x == null ? "-" : (x * 100).toFixed(0) + "%";
  for (const g of r.gestures) {
    const tr = el("tr", {dataset: {gesture: g.name}}, el("td", {textContent: g.name}), el("td", {textContent: g.samples}),
      el("td", {textContent: g.outliers}), el("td", {textContent: pct(g.accuracy)}), el("td", {textContent: pct(g.consistency)}),
      el("td", {textContent: g.practice.attempts ? `${g.practice.correct}/${g.practice.attempts}` : "-"}), el("td"));
    tr.lastChild.append(el("button", {textContent: "delete", onclick: () => confirm(`delete ${g.name}?`) &&
      act("gestures.delete", {name: g.name}, () => `deleted ${g.name}`).then(refreshGestures)}));
    body.append(tr);
  }
  const sel = $("#practiceGesture"), keep = sel.value;
  sel.replaceChildren(...r.gestures.map(g => el("option", {value: g.name, textContent: g.name}))); if (keep) sel.value = keep;
  refreshPractice();
}
$("#refreshGestures").onclick = refreshGestures;
$("#trainGestures").onclick = () => act("gestures.train", {}, r => `trained: accuracy ${r.accuracy}`).then(refreshGestures);
let recording = false;
$("#recordForm").onsubmit = (ev) => { ev.preventDefault();
  act("record.start", {name: $("#recName").value.trim(), target: Number($("#recTarget").value),
    countdown_s: Number($("#recCountdown").value)}, r => r.resumed ? `resumed: ${r.samples}/${r.target}` : "recording"); };
$("#recCancel").onclick = () => act("record.cancel", {}, r => r.note);
function onRecord(m) {
  recording = !["done", "failed", "cancelled", "paused"].includes(m.state);
  const s = $("#recStatus"); s.dataset.state = m.state;
  s.textContent = {countdown: `${m.left}…`, go: "go!", sample: `sample ${m.samples}/${m.target} ok`,
    rejected: `once more (${m.why})`, done: `${m.name}: saved ${m.samples} samples`, started: "get ready",
    failed: `failed: ${m.error}`, cancelled: "stopped (resumable)", paused: m.reason}[m.state] || m.state;
  if (m.state === "done") refreshGestures();
}
$("#practiceStart").onclick = () => act("practice.start", {gesture: $("#practiceGesture").value}, r => `practise ${r.practising}`);
$("#practiceStop").onclick = () => act("practice.stop", {}, () => "practice stopped").then(refreshPractice);
function onPractice(m) { const a = m.attempt;
  feed("#practiceFeed", `${a.correct ? "✔" : "✘"} ${a.recognized || "unknown"}` + (a.confidence != null ? ` ${(a.confidence * 100).toFixed(0)}%` : "")); }
async function refreshPractice() {
  let r; try { r = await call("practice.history"); } catch (e) { return; }
  const body = $("#practiceHistory tbody"); body.replaceChildren();
  for (const [name, days] of Object.entries(r.by_gesture)) for (const d of days)
    body.append(el("tr", {}, el("td", {textContent: name}), el("td", {textContent: d.day}),
      el("td", {textContent: d.attempts}), el("td", {textContent: (d.accuracy * 100).toFixed(0) + "%"})));
}
connect();
