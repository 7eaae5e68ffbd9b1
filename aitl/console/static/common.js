// What both pages share: who the user is (token, agent id) and the API calls.
// Credentials come from, in order: the URL fragment (#token=…&agent=…, never sent to a
// server), an embedding's {type: "aitl.init"} message, or the sign-in form; they are
// kept in sessionStorage for the tab's life only.

export const auth = {
  token: sessionStorage.getItem("aitl.token") || "",
  agent: sessionStorage.getItem("aitl.agent") || "",
};

export function readFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("token") || params.has("agent")) {
    setAuth(params.get("token") || "", params.get("agent") || auth.agent);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

export function setAuth(token, agent) {
  auth.token = token;
  auth.agent = agent;
  sessionStorage.setItem("aitl.token", token);
  sessionStorage.setItem("aitl.agent", agent);
}

export async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
  if (options.body) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { ...options, headers });
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  return { status: res.status, data };
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c);
  return node;
}

export function uuid4() {
  return crypto.randomUUID ? crypto.randomUUID()
    : "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
      (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16));
}

export function nowIso() {
  return new Date().toISOString();
}
