// singerid web page: plain JavaScript, no external code. Talks to the REST API under /v1.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f"];
const recorded = {}; // input id -> File made from a microphone recording

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function busy(text, on) {
  $("status").hidden = !on;
  $("status-text").textContent = text;
  $("status-progress").removeAttribute("value");
  document.querySelectorAll("button.primary").forEach((b) => { b.disabled = on; });
}

// One request with upload progress; resolves to the JSON answer, rejects with a one-line reason.
function call(method, url, form, label) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    const token = $("token").value.trim();
    if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        $("status-progress").value = Math.round((100 * e.loaded) / e.total);
        $("status-text").textContent = e.loaded < e.total ? label + ": uploading…" : label + ": analysing…";
      }
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
      let reason = body && typeof body.detail === "string" ? body.detail : "the server answered " + xhr.status;
      if (xhr.status === 503) reason = "The service is busy; try again in " + (xhr.getResponseHeader("Retry-After") || "a few") + " s. (" + reason + ")";
      if (xhr.status === 401 || xhr.status === 403) reason += " Enter the access token below.";
      if (xhr.status >= 500 && xhr.status !== 503) reason = "Server error (" + xhr.status + "): " + reason;
      reject(new Error(reason));
    };
    xhr.onerror = () => reject(new Error("Cannot reach the service; is it still running?"));
    busy(label + "…", true);
    xhr.send(form || null);
  });
}

async function run(label, work) {
  showError("");
  try {
    await work();
  } catch (err) {
    showError(err.message);
  } finally {
    busy("", false);
  }
}

function fileOf(inputId) {
  const input = $(inputId);
  if (input.files && input.files.length) return input.files[0];
  return recorded[inputId] || null;
}

// -- compare -----------------------------------------------------------------------------
function placeOnScale(el, value) {
  el.style.left = (50 * (Math.max(-1, Math.min(1, value)) + 1)).toFixed(1) + "%";
}

async function compare() {
  const a = fileOf("compare-a"), b = fileOf("compare-b");
  $("verdict").hidden = true;
  if (!a || !b) throw new Error("Choose (or record) two recordings first.");
  const form = new FormData();
  form.append("a", a, a.name);
  form.append("b", b, b.name);
  const r = await call("POST", "/v1/verify", form, "Comparing");
  const text = $("verdict-text");
  text.className = "verdict";
  if (r.same_singer === true) { text.textContent = "Same singer"; text.classList.add("yes"); }
  else if (r.same_singer === false) { text.textContent = "Different singers"; text.classList.add("no"); }
  else { text.textContent = "No decision (the model has no calibrated threshold)"; }
  placeOnScale($("scale-score"), r.score);
  $("scale-threshold").hidden = r.threshold === null;
  if (r.threshold !== null) placeOnScale($("scale-threshold"), r.threshold);
  const where = r.threshold_source === "given" ? "the threshold you gave" : "the model's calibrated threshold for recordings of these lengths";
  let explain = "Similarity " + r.score.toFixed(3);
  if (r.threshold !== null) explain += (r.score >= r.threshold ? " reaches " : " is below ") + r.threshold.toFixed(3) + ", " + where + ".";
  if (r.probability !== null) explain += " Calibrated probability of the same singer: " + Math.round(100 * r.probability) + "%.";
  explain += " Lengths: " + r.seconds.map((s) => s.toFixed(1) + " s").join(" and ") + ".";
  const warnings = [].concat(...r.quality.map((q, i) => q.warnings.map((w) => r.files[i] + ": " + w)));
  if (warnings.length) explain += " Note: " + warnings.join("; ");
  $("verdict-explain").textContent = explain;
  $("verdict").hidden = false;
}

// -- identify ----------------------------------------------------------------------------
async function identify() {
  const f = fileOf("identify-file");
  $("identify-result").hidden = true;
  if (!f) throw new Error("Choose a recording to identify.");
  const form = new FormData();
  form.append("audio", f, f.name);
  const r = await call("POST", "/v1/identify", form, "Identifying");
  const verdict = $("identify-verdict");
  verdict.className = "verdict";
  if (r.singer === "unknown") {
    verdict.textContent = "unknown: no enrolled singer is close enough (threshold " + r.threshold.toFixed(3) + ")";
    verdict.classList.add("no");
  } else {
    verdict.textContent = r.singer;
    verdict.classList.add("yes");
  }
  const list = $("identify-list");
  list.replaceChildren(...r.matches.map((m) => {
    const li = document.createElement("li");
    li.textContent = m.name + " — " + m.score.toFixed(3);
    return li;
  }));
  $("identify-result").hidden = false;
}

// -- enroll, singers ---------------------------------------------------------------------
async function enroll() {
  const name = $("enroll-name").value.trim();
  const files = Array.from($("enroll-files").files || []);
  if (!name) throw new Error("Type the singer's name.");
  if (!files.length) throw new Error("Choose at least one recording of " + name + ".");
  const form = new FormData();
  form.append("singer", name);
  files.forEach((f) => form.append("audio", f, f.name));
  const r = await call("POST", "/v1/enroll", form, "Enrolling " + name);
  let note = "Enrolled " + r.singer + ": " + r.ids.length + " recording(s) added, " + r.recordings + " in total.";
  if (r.skipped.length) note += " Already there: " + r.skipped.join(", ") + ".";
  $("enroll-result").textContent = note;
  $("enroll-result").hidden = false;
  $("enroll-files").value = "";
  $("enroll-name").value = "";
  await Promise.all([loadSingers(), loadMap()]);
}

async function removeSinger(name) {
  if (!window.confirm("Delete " + name + " and all their recordings?")) return;
  await run("Deleting", async () => {
    await call("DELETE", "/v1/singers/" + encodeURIComponent(name), null, "Deleting " + name);
    await Promise.all([loadSingers(), loadMap()]);
  });
}

async function loadSingers() {
  const r = await call("GET", "/v1/singers", null, "Loading singers");
  const list = $("singers-list");
  list.replaceChildren(...r.singers.map((s) => {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = s.name + " (" + s.recordings + " recording" + (s.recordings === 1 ? "" : "s") + ", " + s.seconds.toFixed(0) + " s)";
    const del = document.createElement("button");
    del.type = "button";
    del.className = "delete";
    del.textContent = "Delete";
    del.setAttribute("aria-label", "Delete " + s.name);
    del.addEventListener("click", () => removeSinger(s.name));
    li.append(label, del);
    return li;
  }));
  $("singers-empty").hidden = r.singers.length > 0;
}

// -- map ---------------------------------------------------------------------------------
async function loadMap() {
  const r = await call("GET", "/v1/map", null, "Loading the map");
  const svg = $("map-svg");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  $("map-empty").hidden = r.points.length > 0;
  const singers = [...new Set(r.points.map((p) => p.singer || "(no singer)"))].sort();
  const colour = (s) => COLOURS[singers.indexOf(s || "(no singer)") % COLOURS.length];
  const xs = r.points.map((p) => p.x), ys = r.points.map((p) => p.y);
  const span = (v) => Math.max(1e-9, Math.max(...v) - Math.min(...v));
  const px = (x) => 20 + (360 * (x - Math.min(...xs))) / span(xs);
  const py = (y) => 280 - (260 * (y - Math.min(...ys))) / span(ys);
  const tip = $("map-tip");
  r.points.forEach((p) => {
    const c = document.createElementNS(ns, "circle");
    c.setAttribute("cx", r.points.length > 1 ? px(p.x).toFixed(1) : 200);
    c.setAttribute("cy", r.points.length > 1 ? py(p.y).toFixed(1) : 150);
    c.setAttribute("r", 7);
    c.setAttribute("fill", colour(p.singer));
    c.setAttribute("class", "map-point");
    c.dataset.id = p.id;
    const title = document.createElementNS(ns, "title");
    title.textContent = p.name + " — " + (p.singer || "no singer");
    c.appendChild(title);
    c.addEventListener("mouseenter", () => {
      tip.textContent = p.name + " — " + (p.singer || "no singer");
      tip.hidden = false;
      tip.style.left = (100 * Number(c.getAttribute("cx")) / 400).toFixed(1) + "%";
      tip.style.top = (100 * Number(c.getAttribute("cy")) / 300).toFixed(1) + "%";
    });
    c.addEventListener("mouseleave", () => { tip.hidden = true; });
    c.addEventListener("click", () => {
      const player = $("player");
      player.src = p.audio;
      player.hidden = false;
      player.play().catch(() => showError("This browser could not play " + p.name + "."));
    });
    svg.appendChild(c);
  });
  $("map-legend").replaceChildren(...singers.map((s) => {
    const li = document.createElement("li");
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = colour(s);
    li.append(dot, document.createTextNode(s));
    return li;
  }));
}

// -- microphone: record, decode in the browser, upload as 16-bit WAV ------------------------
function wavFile(buffer, name) {
  const data = buffer.getChannelData(0), rate = buffer.sampleRate;
  const out = new DataView(new ArrayBuffer(44 + 2 * data.length));
  const text = (o, s) => { for (let i = 0; i < s.length; i++) out.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); out.setUint32(4, 36 + 2 * data.length, true); text(8, "WAVE"); text(12, "fmt ");
  out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, rate, true); out.setUint32(28, 2 * rate, true); out.setUint16(32, 2, true); out.setUint16(34, 16, true);
  text(36, "data"); out.setUint32(40, 2 * data.length, true);
  for (let i = 0; i < data.length; i++) out.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, data[i])) * 32767, true);
  return new File([out], name, { type: "audio/wav" });
}

async function toggleMic(button) {
  const target = button.dataset.target;
  const note = document.querySelector('.mic-note[data-for="' + target + '"]');
  if (button._recorder) { button._recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) throw new Error("This browser cannot record here (microphones need https or localhost).");
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    button._recorder = null;
    button.textContent = "● Record";
    try {
      const bytes = await new Blob(chunks).arrayBuffer();
      const buffer = await new AudioContext().decodeAudioData(bytes);
      recorded[target] = wavFile(buffer, "microphone-" + target + ".wav");
      $(target).value = "";
      note.textContent = "recorded " + buffer.duration.toFixed(1) + " s";
    } catch (err) {
      showError("The recording could not be decoded: " + err.message);
    }
  };
  recorder.start();
  button._recorder = recorder;
  button.textContent = "■ Stop";
  note.textContent = "recording…";
}

// -- wiring ------------------------------------------------------------------------------
$("compare-btn").addEventListener("click", () => run("Comparing", compare));
$("identify-btn").addEventListener("click", () => run("Identifying", identify));
$("enroll-btn").addEventListener("click", () => run("Enrolling", enroll));
document.querySelectorAll("button.mic").forEach((b) => b.addEventListener("click", () => run("", () => toggleMic(b))));
["compare-a", "compare-b"].forEach((id) => $(id).addEventListener("change", () => {
  delete recorded[id];
  document.querySelector('.mic-note[data-for="' + id + '"]').textContent = "";
}));
const saved = window.sessionStorage.getItem("singerid-token");
if (saved) $("token").value = saved;
$("token").addEventListener("change", () => window.sessionStorage.setItem("singerid-token", $("token").value.trim()));
run("Loading", () => Promise.all([loadSingers(), loadMap()]));
