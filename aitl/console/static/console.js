// The agent's panel for one case. Every decision becomes an event in the local outbox
// (outbox.js) with the time the agent made it; the outbox posts them to the gateway.
//
// Embedding (postMessage; the console answers only the window that embeds it):
//   in:  {type: "aitl.init", token, agent_id}          who annotates
//        {type: "aitl.case", request_id, mode?}        show a case ("immediate" | "deferred")
//        {type: "aitl.defer", request_id, handled_at}  queue a case handled elsewhere
//   out: {type: "aitl.ready"}                          listening
//        {type: "aitl.sent", request_id, case_id, decision, candidate_id, text}
//        {type: "aitl.outbox", pending, failed}        after every outbox change
// Standalone: /console?request_id=…#token=…&agent=…

import { Outbox, openDb } from "./outbox.js";
import { api, auth, el, nowIso, readFragment, setAuth, uuid4 } from "./common.js";

const CATEGORIES = ["ACCURATE", "INCOMPLETE", "INACCURATE", "TONE", "POLICY", "IRRELEVANT", "OTHER"];
const $ = (id) => document.getElementById(id);

let outbox = null;
let tenant = "default";
let parentOrigin = null;
let c = null; // the case on screen and what the agent decided so far

function fresh(data, mode, handledAt) {
  return {
    data, mode, handledAt: handledAt || null, openedAt: nowIso(),
    preferred: null, preferredAt: null, labels: {}, labelsAt: null, focus: 0,
    missing: [], lookedUpAt: null, editing: null, done: false,
  };
}

function say(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function envelope(time) {
  return { event_id: uuid4(), event_time: time, tenant_id: tenant, producer: "aitl-console" };
}

function post(message) {
  if (window.parent !== window && parentOrigin) window.parent.postMessage(message, parentOrigin);
}

// --- loading a case ----------------------------------------------------------------
async function loadCase(requestId, mode = "immediate", handledAt = null) {
  say(`loading ${requestId}…`);
  for (let attempt = 0; attempt < 40; attempt++) {
    const { status, data } = await api(`/console/api/cases/${encodeURIComponent(requestId)}`);
    if (status === 200) {
      c = fresh(data, mode, handledAt);
      render();
      say(mode === "deferred" ? "deferred: the reply was sent; annotate it now" : "");
      $("panel").focus();
      return;
    }
    if (status === 401) { say("the gateway refused the token", true); showSignin(); return; }
    await new Promise((r) => setTimeout(r, 500)); // the suggestion may not be read yet
  }
  say(`no suggestion ${requestId} on the topics`, true);
}

function render() {
  const d = c.data;
  $("panel").hidden = false;
  $("case-label").textContent = `case ${d.case_id} · request ${d.request_id}`;
  $("mode").textContent = c.mode;
  $("conversation").replaceChildren(...d.conversation.map((t) =>
    el("li", { class: t.speaker }, el("b", { text: t.speaker.toLowerCase() }), t.text)));
  for (const cand of d.candidates) {
    const node = $(`cand-${cand.candidate_id}`);
    if (node) node.querySelector(".text").textContent = cand.text;
  }
  renderKnowledge();
  renderPreference();
  renderMissing();
  const deferred = c.mode === "deferred";
  for (const id of ["send", "edit", "reject", "later"]) $(id).disabled = false;
  $("send").textContent = deferred ? "Save annotations (s)" : "Send as-is (s)";
  for (const id of ["edit", "reject", "later"]) $(id).hidden = deferred;
  $("editor").hidden = true;
}

function renderKnowledge() {
  const items = c.data.knowledge.map((k, i) => {
    const label = c.labels[k.knowledge_id] || "";
    const btn = (value, text, key) => el("button", {
      "aria-pressed": String(label === value), "aria-keyshortcuts": key, tabindex: "-1",
      "aria-label": `${text}: ${k.title}`, onclick: () => setLabel(i, value),
    }, text);
    return el("li", {
      tabindex: i === c.focus ? "0" : "-1", "data-label": label, "data-id": k.knowledge_id,
      "aria-label": `${i + 1}. ${k.title}${label ? `, ${label.toLowerCase()}` : ", not labelled"}`,
      onfocus: () => { c.focus = i; },
    },
    el("span", { class: "title", text: `${i + 1}. ${k.title}` }),
    el("span", { class: "labels" }, btn("RELEVANT", "relevant", "y"), btn("PARTIAL", "partial", "p"),
      btn("IRRELEVANT", "not relevant", "n"),
      el("button", { tabindex: "-1", "aria-keyshortcuts": "o", "aria-label": `open ${k.title}`,
        onclick: () => openObject(k) }, "open")),
    el("span", { class: "snippet", text: k.text }));
  });
  $("knowledge").replaceChildren(...items);
}

function focusKnowledge(i) {
  const n = c.data.knowledge.length;
  if (!n) return;
  c.focus = Math.max(0, Math.min(n - 1, i));
  const items = $("knowledge").children;
  for (let j = 0; j < items.length; j++) items[j].tabIndex = j === c.focus ? 0 : -1;
  items[c.focus].focus();
}

function setLabel(i, value, advance = false) {
  const k = c.data.knowledge[i];
  if (!k) return;
  c.labels[k.knowledge_id] = value;
  c.labelsAt = nowIso();
  renderKnowledge();
  focusKnowledge(advance ? i + 1 : i);
}

function labelRest() {
  for (const k of c.data.knowledge) if (!c.labels[k.knowledge_id]) c.labels[k.knowledge_id] = "IRRELEVANT";
  c.labelsAt = nowIso();
  renderKnowledge();
  focusKnowledge(c.focus);
  say("the rest labelled not relevant");
}

function setPreferred(p) {
  c.preferred = p;
  c.preferredAt = nowIso();
  renderPreference();
  say(`preferred: ${p === "TIE" ? "tie" : p}`);
}

function renderPreference() {
  for (const id of ["A", "B"]) $(`cand-${id}`).setAttribute("aria-checked", String(c.preferred === id));
  document.querySelector(".candidates").classList.toggle("tie", c.preferred === "TIE");
}

function openObject(k) {
  $("object-title").textContent = k.title;
  $("object-text").textContent = k.text || "(this object is not on the knowledge topic)";
  $("object-link").hidden = !k.url;
  if (k.url) $("object-link").href = k.url;
  $("object").showModal();
}

// --- missing knowledge ---------------------------------------------------------------
async function search(q) {
  if (!q.trim()) return;
  c.lookedUpAt = c.lookedUpAt || nowIso();
  const { data } = await api(`/console/api/knowledge?q=${encodeURIComponent(q)}`);
  const results = (data && data.results) || [];
  $("results").replaceChildren(...results.map((k) => el("li", {},
    el("span", { text: k.title }),
    el("button", { "aria-label": `attach ${k.title}`, onclick: () => attach({ knowledge_id: k.knowledge_id }, k.title) }, "attach"))));
  say(`${results.length} results; ↓ then Enter attaches`);
}

function attach(item, title) {
  c.lookedUpAt = c.lookedUpAt || nowIso();
  c.missing.push({ ...item, title, at: nowIso() });
  renderMissing();
  say(`attached: ${title}`);
}

function renderMissing() {
  $("attached").replaceChildren(...c.missing.map((m, i) => el("li", {},
    el("span", { text: m.title }),
    el("button", { "aria-label": `remove ${m.title}`, onclick: () => { c.missing.splice(i, 1); renderMissing(); } }, "remove"))));
  if (!c.missing.length) $("results").replaceChildren();
}

// --- sending -------------------------------------------------------------------------
function openEditor(kind) {
  if (c.mode === "deferred") return;
  const cand = candidate(c.preferred === "B" ? "B" : "A");
  c.editing = kind;
  $("editor").hidden = false;
  $("editor-label").textContent = kind === "EDITED" ? `Edit reply ${cand.candidate_id}` : "Your own reply (both candidates rejected)";
  $("editor-text").value = kind === "EDITED" ? cand.text : "";
  $("editor-text").focus();
}

function closeEditor() {
  c.editing = null;
  $("editor").hidden = true;
  $("panel").focus();
}

function candidate(id) {
  return c.data.candidates.find((x) => x.candidate_id === id) || c.data.candidates[0];
}

function base() {
  return { request_id: c.data.request_id, case_id: c.data.case_id, agent_id: auth.agent };
}

function annotationEvents(timing) {
  const out = [];
  if (c.preferred) {
    out.push({ event_type: "preference", body: { envelope: envelope(c.preferredAt), ...base(), preferred: c.preferred } });
  }
  const labels = Object.entries(c.labels).map(([knowledge_id, label]) => ({ knowledge_id, label }));
  if (labels.length) {
    out.push({ event_type: "relevance", body: { envelope: envelope(c.labelsAt), ...base(), labels } });
  }
  if (c.missing.length) {
    const annotated = c.missing[c.missing.length - 1].at;
    const looked = timing === "DEFERRED" && c.handledAt ? c.handledAt : (c.lookedUpAt || annotated);
    out.push({ event_type: "missing-knowledge", body: {
      envelope: envelope(annotated), ...base(), timing,
      items: c.missing.map(({ knowledge_id, text }) => (knowledge_id ? { knowledge_id } : { text })),
      looked_up_at: looked, annotated_at: annotated } });
  }
  return out;
}

function adoptionEvent(decision) {
  const chosen = candidate(c.preferred === "B" ? "B" : "A");
  const now = nowIso();
  const edited = decision !== "AS_IS";
  const body = {
    envelope: envelope(now), ...base(), decision,
    candidate_id: decision === "REJECTED" ? null : chosen.candidate_id,
    final_text: edited ? $("editor-text").value : chosen.text,
    rationale_category: edited ? selectedCategory() : "ACCURATE",
    rationale_text: edited ? $("rationale-text").value.trim() : "",
  };
  return { event_type: "adoption", body };
}

function selectedCategory() {
  const checked = document.querySelector('input[name="category"]:checked');
  return checked ? checked.value : "";
}

async function submit(decision) {
  if (!c || c.done) return;
  if (c.mode === "deferred") {
    const events = annotationEvents("DEFERRED");
    if (!events.length) { say("nothing to save: prefer, label or attach first", true); return; }
    await outbox.add(events);
    await outbox.undefer(c.data.request_id);
    finish(`${events.length} deferred annotations saved`);
    return;
  }
  if (decision !== "REJECTED" && !c.preferred) { say("choose the preferred reply first: a, b or t", true); return; }
  if (decision !== "AS_IS" && !(selectedCategory() && $("rationale-text").value.trim())) {
    say("a rationale is required: a category and a few words", true);
    (selectedCategory() ? $("rationale-text") : document.querySelector('input[name="category"]')).focus();
    return;
  }
  const adoption = adoptionEvent(decision);
  const events = [...annotationEvents("IMMEDIATE"), adoption];
  await outbox.add(events);
  post({ type: "aitl.sent", request_id: c.data.request_id, case_id: c.data.case_id, decision,
    candidate_id: adoption.body.candidate_id, text: adoption.body.final_text });
  finish(`sent (${decision.toLowerCase().replace("_", "-")}); ${events.length} events in the outbox`);
}

async function sendLater() {
  if (!c || c.done || c.mode === "deferred") return;
  const adoption = adoptionEvent("AS_IS");
  await outbox.add([adoption]);
  await outbox.defer(c.data.request_id, adoption.body.envelope.event_time);
  post({ type: "aitl.sent", request_id: c.data.request_id, case_id: c.data.case_id, decision: "AS_IS",
    candidate_id: adoption.body.candidate_id, text: adoption.body.final_text });
  finish("sent as-is; the case waits in the queue (q) to be annotated");
}

function finish(message) {
  c.done = true;
  $("editor").hidden = true;
  for (const id of ["send", "edit", "reject", "later"]) $(id).disabled = true;
  say(message);
  $("panel").focus();
}

// --- queue and outbox drawers ----------------------------------------------------------
async function showQueue() {
  const local = await outbox.deferred();
  const { data } = await api(`/console/api/queue?agent_id=${encodeURIComponent(auth.agent)}`);
  const seen = new Map(local.map((d) => [d.request_id, d.handled_at]));
  for (const s of (data && data.cases) || []) if (!seen.has(s.request_id)) seen.set(s.request_id, s.sent_at);
  const items = [...seen].map(([rid, at]) => el("li", {}, el("button", {
    onclick: () => { toggle("queue", false); loadCase(rid, "deferred", at); },
  }, `${rid} · sent ${new Date(at).toLocaleTimeString()}`)));
  $("queue-list").replaceChildren(...(items.length ? items : [el("li", { text: "nothing waiting" })]));
  const first = $("queue-list").querySelector("button");
  if (first) first.focus();
}

function showOutbox(rows) {
  const pending = rows.filter((r) => r.state === "pending").length;
  const failed = rows.filter((r) => r.state === "failed").length;
  $("pending-count").textContent = String(pending) + (failed ? ` · ${failed} failed` : "");
  $("outbox-toggle").classList.toggle("warn", pending + failed > 0);
  $("outbox-list").replaceChildren(...rows.map((r) => el("li", { class: r.state },
    `${r.event_type} · ${r.body.request_id} · ${r.state}, ${r.attempts} tries`,
    r.last_error ? el("div", { class: "hint", text: r.last_error }) : "",
    r.state === "failed" ? el("button", { onclick: () => outbox.discard(r.event_id) }, "discard") : "")));
  post({ type: "aitl.outbox", pending, failed });
}

function toggle(id, open) {
  const node = $(id);
  const show = open === undefined ? node.hidden : open;
  node.hidden = !show;
  $(`${id}-toggle`).setAttribute("aria-expanded", String(show));
  if (show && id === "queue") showQueue();
}

// --- keys ----------------------------------------------------------------------------
function typing(target) {
  return target instanceof HTMLTextAreaElement || (target instanceof HTMLInputElement && target.type !== "radio");
}

function onKey(e) {
  if ($("object").open) return; // the dialog has the keys; Esc closes it
  if (!outbox || (!c && !["q", "i", "?"].includes(e.key))) return;
  const t = e.target;
  if (e.key === "Escape") {
    for (const id of ["outbox", "queue", "help"]) toggle(id, false);
    if (c && c.editing) closeEditor(); else $("panel").focus();
    return;
  }
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && c && c.editing) { e.preventDefault(); submit(c.editing); return; }
  if (t.id === "search" && e.key === "Enter") { e.preventDefault(); search(t.value); return; }
  if (t.id === "search" && e.key === "ArrowDown") {
    e.preventDefault();
    const first = $("results").querySelector("button");
    if (first) first.focus();
    return;
  }
  if (t.id === "describe" && e.key === "Enter" && t.value.trim()) {
    e.preventDefault(); attach({ text: t.value.trim() }, t.value.trim()); t.value = ""; return;
  }
  if (t.closest && t.closest("#results") && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
    e.preventDefault();
    const li = t.closest("li");
    const next = e.key === "ArrowDown" ? li.nextElementSibling : li.previousElementSibling;
    if (next) next.querySelector("button").focus(); else if (e.key === "ArrowUp") $("search").focus();
    return;
  }
  if (typing(t) || e.ctrlKey || e.metaKey || e.altKey) return;
  if (t instanceof HTMLButtonElement && e.key === "Enter") return; // the button's own action
  const k = c ? c.focus : 0;
  const actions = {
    a: () => setPreferred("A"), b: () => setPreferred("B"), t: () => setPreferred("TIE"),
    j: () => focusKnowledge(k + 1), ArrowDown: () => focusKnowledge(k + 1),
    k: () => focusKnowledge(k - 1), ArrowUp: () => focusKnowledge(k - 1),
    y: () => setLabel(k, "RELEVANT", true), p: () => setLabel(k, "PARTIAL", true),
    n: () => setLabel(k, "IRRELEVANT", true), u: labelRest,
    o: () => c.data.knowledge[k] && openObject(c.data.knowledge[k]),
    s: () => submit("AS_IS"), Enter: () => submit("AS_IS"),
    e: () => openEditor("EDITED"), r: () => openEditor("REJECTED"), d: sendLater,
    "/": () => $("search").focus(), w: () => $("describe").focus(),
    q: () => toggle("queue"), i: () => toggle("outbox"), "?": () => toggle("help"),
  };
  const action = actions[e.key];
  if (!action) return;
  if (t.type === "radio" && e.key.startsWith("Arrow")) return; // the category's own arrows
  e.preventDefault();
  action();
}

// --- start -----------------------------------------------------------------------------
function buildCategories() {
  const box = $("categories");
  CATEGORIES.forEach((cat) => {
    box.append(el("label", {}, el("input", { type: "radio", name: "category", value: cat }), ` ${cat.toLowerCase()}`));
  });
}

function showSignin() {
  const form = $("signin");
  form.hidden = false;
  $("signin-agent").value = auth.agent;
  $("signin-request").value = new URLSearchParams(location.search).get("request_id") || "";
  form.onsubmit = (e) => {
    e.preventDefault();
    setAuth($("signin-token").value, $("signin-agent").value);
    form.hidden = true;
    start($("signin-request").value);
  };
  $("signin-agent").focus();
}

async function start(requestId) {
  const db = outbox ? outbox.db : await openDb();
  if (!outbox) outbox = new Outbox(db, { token: auth.token, onChange: showOutbox });
  outbox.token = auth.token;
  const { status, data } = await api("/console/api/config");
  if (status === 401) { say("the gateway refused the token", true); showSignin(); return; }
  if (data) tenant = data.tenant_id;
  showOutbox(await outbox.all());
  outbox.flush();
  if (requestId) loadCase(requestId);
  else say("waiting for a case (?request_id=… or the embedding's aitl.case message); q opens the queue");
}

function onMessage(e) {
  if (e.source !== window.parent || window.parent === window) return;
  const m = e.data || {};
  if (m.type === "aitl.init") {
    parentOrigin = e.origin;
    setAuth(m.token || "", m.agent_id || "");
    $("signin").hidden = true;
    start(null);
  } else if (e.origin !== parentOrigin) {
    return;
  } else if (m.type === "aitl.case") {
    loadCase(m.request_id, m.mode === "deferred" ? "deferred" : "immediate", m.handled_at || null);
  } else if (m.type === "aitl.defer" && outbox) {
    outbox.defer(m.request_id, m.handled_at || nowIso());
  }
}

function main() {
  readFragment();
  buildCategories();
  $("panel").tabIndex = -1;
  $("panel").setAttribute("aria-label", "Case panel (press ? for keys)");
  document.addEventListener("keydown", onKey);
  addEventListener("message", onMessage);
  $("tie").onclick = () => setPreferred("TIE");
  $("cand-A").onclick = () => setPreferred("A");
  $("cand-B").onclick = () => setPreferred("B");
  $("send").onclick = () => submit("AS_IS");
  $("edit").onclick = () => openEditor("EDITED");
  $("reject").onclick = () => openEditor("REJECTED");
  $("later").onclick = sendLater;
  $("object-close").onclick = () => $("object").close();
  for (const id of ["outbox", "queue", "help"]) $(`${id}-toggle`).onclick = () => toggle(id);
  const requestId = new URLSearchParams(location.search).get("request_id");
  if (window.parent !== window && !auth.agent) {
    window.parent.postMessage({ type: "aitl.ready" }, "*"); // carries nothing; init brings the origin
    return;
  }
  if (!auth.agent) { showSignin(); return; }
  start(requestId);
  if (window.parent !== window) window.parent.postMessage({ type: "aitl.ready" }, "*");
}

main();
