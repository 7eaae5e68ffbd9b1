// The flywheel page: everything is read from /console/api/flywheel (the gateway's fold of
// the models, verdicts and annotation topics) every 5 s; promote and roll back post to
// /console/api/models/… and only a token with the models role sees those buttons.

import { api, auth, el, readFragment, setAuth } from "./common.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#0b5cad", "#c2410c", "#1f6f3a", "#7c3aed", "#a0241b", "#0e7490", "#7a5200", "#be185d", "#4d5560"];
const W = 520;
const H = 170;
const PAD = { l: 40, r: 8, t: 8, b: 22 };
let lastComponents = "";

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function chart(label) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": label });
  root.append(svg("title", {}, label));
  return root;
}

function timeLabel(iso, step) {
  const d = new Date(iso);
  return step >= 86400 ? d.toISOString().slice(5, 10) : d.toISOString().slice(11, 16);
}

function axes(root, axis, max) {
  const n = axis.starts.length;
  const x0 = PAD.l;
  const y0 = H - PAD.b;
  root.append(svg("line", { x1: x0, y1: y0, x2: W - PAD.r, y2: y0, stroke: "#4d5560" }));
  root.append(svg("line", { x1: x0, y1: PAD.t, x2: x0, y2: y0, stroke: "#4d5560" }));
  root.append(svg("text", { x: x0 - 4, y: PAD.t + 8, "text-anchor": "end" }, fmt(max)));
  root.append(svg("text", { x: x0 - 4, y: y0, "text-anchor": "end" }, "0"));
  const every = Math.max(1, Math.ceil(n / 6));
  axis.starts.forEach((s, i) => {
    if (i % every) return;
    root.append(svg("text", { x: x0 + (i + 0.5) * bw(n), y: H - 6, "text-anchor": "middle" }, timeLabel(s, axis.step_s)));
  });
}

const bw = (n) => (W - PAD.l - PAD.r) / Math.max(n, 1);
const fmt = (v) => (v >= 100 ? Math.round(v) : Math.round(v * 10) / 10);

function legend(names) {
  return el("div", { class: "legend" }, ...names.map((name, i) =>
    el("span", {}, el("i", { style: `background:${PALETTE[i % PALETTE.length]}` }), name)));
}

function stacked(target, axis, series, label) {
  const names = Object.keys(series);
  const n = axis.starts.length;
  const totals = axis.starts.map((_, i) => names.reduce((s, k) => s + series[k][i], 0));
  const max = Math.max(1, ...totals);
  const root = chart(`${label}: ${names.map((k) => `${k} ${series[k].reduce((a, b) => a + b, 0)}`).join(", ") || "none yet"}`);
  axes(root, axis, max);
  const scale = (H - PAD.t - PAD.b) / max;
  axis.starts.forEach((_, i) => {
    let y = H - PAD.b;
    names.forEach((k, j) => {
      const h = series[k][i] * scale;
      if (!h) return;
      y -= h;
      const rect = svg("rect", { x: PAD.l + i * bw(n) + 1, y, width: Math.max(bw(n) - 2, 1), height: h, fill: PALETTE[j % PALETTE.length] });
      rect.append(svg("title", {}, `${k}: ${series[k][i]}`));
      root.append(rect);
    });
  });
  target.replaceChildren(root, legend(names));
}

function lines(target, axis, series, label) {
  const names = Object.keys(series);
  const n = axis.starts.length;
  const values = names.flatMap((k) => series[k].filter((v) => v !== null));
  const max = Math.max(1, ...values);
  const root = chart(`${label}: ${names.map((k) => `${k} latest ${fmt(series[k].filter((v) => v !== null).pop() ?? 0)}`).join(", ")}`);
  axes(root, axis, max);
  const scale = (H - PAD.t - PAD.b) / max;
  names.forEach((k, j) => {
    const pts = series[k].map((v, i) => (v === null ? null : `${PAD.l + (i + 0.5) * bw(n)},${H - PAD.b - v * scale}`)).filter(Boolean);
    if (pts.length) root.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: PALETTE[j], "stroke-width": 2 }));
    for (const p of pts) {
      const [x, y] = p.split(",");
      root.append(svg("circle", { cx: x, cy: y, r: 3, fill: PALETTE[j] }));
    }
  });
  target.replaceChildren(root, legend(names));
}

function timeline(target, components) {
  const events = components.flatMap((c) => c.events.map((e) => ({ ...e, component: c.component })));
  const times = events.map((e) => Date.parse(e.time));
  const lo = Math.min(...times);
  const hi = Math.max(...times);
  const span = Math.max(hi - lo, 1000);
  const rowH = 40;
  const height = PAD.t + rowH * Math.max(components.length, 1) + PAD.b;
  const label = `Lifecycle events: ${events.filter((e) => e.action === "PROMOTED").length} promotions, ${events.filter((e) => e.action === "ROLLED_BACK").length} rollbacks`;
  const root = svg("svg", { viewBox: `0 0 ${W} ${height}`, width: "100%", role: "img", "aria-label": label });
  root.append(svg("title", {}, label));
  const x = (t) => PAD.l + 30 + ((t - lo) / span) * (W - PAD.l - PAD.r - 40);
  const marks = { PROMOTED: ["▲", "#1f6f3a"], ROLLED_BACK: ["▼", "#a0241b"], REJECTED: ["✕", "#a0241b"], REGISTERED: ["●", "#4d5560"] };
  components.forEach((c, row) => {
    const y = PAD.t + row * rowH + rowH / 2;
    root.append(svg("text", { x: 2, y: y + 3 }, c.component));
    root.append(svg("line", { x1: PAD.l + 30, y1: y, x2: W - PAD.r, y2: y, stroke: "#c9d0d8" }));
    for (const e of c.events) {
      const [glyph, color] = marks[e.action] || ["?", "#000"];
      const mark = svg("text", { x: x(Date.parse(e.time)), y: y + 4, "text-anchor": "middle", fill: color, style: `fill:${color};font-size:13px` }, glyph);
      mark.append(svg("title", {}, `${e.action} ${e.version} at ${e.time}${e.reason ? ` (${e.reason})` : ""}`));
      root.append(mark);
    }
  });
  if (events.length) {
    root.append(svg("text", { x: PAD.l + 30, y: height - 6 }, new Date(lo).toISOString().slice(0, 16).replace("T", " ")));
    root.append(svg("text", { x: W - PAD.r, y: height - 6, "text-anchor": "end" }, new Date(hi).toISOString().slice(0, 16).replace("T", " ")));
  }
  target.replaceChildren(root, el("div", { class: "legend" }, "▲ promoted · ▼ rolled back · ✕ rejected · ● registered"));
}

function metricsText(m) {
  return Object.entries(m || {}).map(([k, v]) => `${k} ${Math.round(v * 1000) / 1000}`).join(", ");
}

function componentCard(c, canManage) {
  const reasonId = `reason-${c.component}`;
  const forceId = `force-${c.component}`;
  const rows = c.versions.map((v) => el("tr", {},
    el("td", { text: v.version }),
    el("td", { class: v.status, text: v.version === c.serving ? "SERVING" : v.status }),
    el("td", { text: metricsText(v.metrics) }),
    el("td", { text: v.reason || "" }),
    canManage && v.version !== c.serving
      ? el("td", {}, el("button", { "aria-label": `promote ${v.version}`, onclick: () => act(c.component, "promote", v.version) }, "promote"))
      : el("td")));
  const controls = canManage ? el("div", { class: "actions" },
    el("label", { for: reasonId }, "reason"), el("input", { id: reasonId }),
    el("label", {}, el("input", { type: "checkbox", id: forceId }), " force (overrule the gate)"),
    el("button", { disabled: !c.serving, "aria-label": `roll back ${c.component}`, onclick: () => act(c.component, "rollback") }, "roll back")) : "";
  return el("section", { class: "card", "aria-label": `${c.component} versions` },
    el("h3", { text: `${c.component}: serving ${c.serving || "stock"}${c.rollback_to ? ` · rollback → ${c.rollback_to}` : ""}` }),
    el("table", {}, el("thead", {}, el("tr", {}, ...["version", "status", "eval metrics", "reason", ""].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ...rows)), controls);
}

async function act(component, op, version = null) {
  const reason = ($(`reason-${component}`) || {}).value || null;
  const force = !!($(`force-${component}`) || {}).checked;
  const body = op === "promote" ? { version, reason, force } : { reason };
  const { status, data } = await api(`/console/api/models/${component}/${op}`, { method: "POST", body: JSON.stringify(body) });
  if (status === 200) say(`${data.action} ${data.version} (before: ${data.previous_version || "stock"})`);
  else say(`${status}: ${(data && (data.error || data.detail)) || "refused"}${data && data.gate_refused ? " (tick force and give a reason)" : ""}`, true);
  refresh();
}

function say(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function agentsTable(agents) {
  if (!agents.length) return el("p", { text: "no verdicts yet" });
  return el("table", {}, el("thead", {}, el("tr", {}, ...["agent (pseudonym)", "verdicts", "accepted", "mean weight", "top reasons"].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...agents.map((a) => el("tr", {},
      el("td", { text: a.agent }), el("td", { text: String(a.verdicts) }),
      el("td", { text: `${Math.round(a.accepted_share * 100)}%` }), el("td", { text: a.mean_weight.toFixed(2) }),
      el("td", { text: a.top_reasons.join(", ") })))));
}

async function refresh() {
  const { status, data } = await api("/console/api/flywheel");
  if (status === 401) { showSignin(); return; }
  if (status !== 200) { say(`the gateway answered ${status}`, true); return; }
  $("role").textContent = data.can_manage ? "models role: may promote and roll back" : "read only";
  const sig = JSON.stringify([data.components, data.can_manage]);
  const active = document.activeElement;
  const typing = active instanceof HTMLInputElement && $("components").contains(active);
  if (sig !== lastComponents && !typing) {
    lastComponents = sig;
    $("components").replaceChildren(...(data.components.length
      ? data.components.map((c) => componentCard(c, data.can_manage))
      : [el("p", { text: "no model events on the topic yet: the stock models serve" })]));
  }
  timeline($("timeline"), data.components);
  stacked($("verdicts"), data.axis, data.verdicts.by_reason, "Verdicts by reason");
  stacked($("volume"), data.axis, data.annotations.by_type, "Annotations by type");
  lines($("latency"), data.axis, { p50: data.annotations.latency_p50_s, p90: data.annotations.latency_p90_s }, "Capture latency");
  $("agents").replaceChildren(agentsTable(data.agents));
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function showSignin() {
  const form = $("signin");
  form.hidden = false;
  form.onsubmit = (e) => {
    e.preventDefault();
    setAuth($("signin-token").value, auth.agent);
    form.hidden = true;
    refresh();
  };
  $("signin-token").focus();
}

readFragment();
refresh();
setInterval(refresh, 5000);
