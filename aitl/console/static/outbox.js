// The local outbox: every annotation is stored in IndexedDB with its event id and event
// time fixed when the agent acted, then posted to the gateway until it answers 202.
// A retry after a lost answer carries the same event id, so it is recognisable downstream.
// 400/403/413/415 are final ("failed", shown to the agent); anything else is retried.

const DB_NAME = "aitl-console";
const FINAL = new Set([400, 403, 404, 413, 415]);

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export function openDb() {
  const req = indexedDB.open(DB_NAME, 1);
  req.onupgradeneeded = () => {
    const db = req.result;
    db.createObjectStore("outbox", { keyPath: "event_id" });
    db.createObjectStore("deferred", { keyPath: "request_id" });
  };
  return request(req);
}

export class Outbox {
  constructor(db, { token, onChange }) {
    this.db = db;
    this.token = token;
    this.onChange = onChange || (() => {});
    this.delay = 1000;
    this.timer = null;
    this.flushing = false;
    addEventListener("online", () => this.flush());
  }

  store(name, mode = "readonly") {
    return this.db.transaction(name, mode).objectStore(name);
  }

  // Queue events atomically (one transaction): all of a case's annotations or none.
  async add(items) {
    const tx = this.db.transaction("outbox", "readwrite");
    for (const item of items) {
      tx.objectStore("outbox").put({
        event_id: item.body.envelope.event_id,
        event_type: item.event_type,
        body: item.body,
        created_at: Date.now(),
        attempts: 0,
        state: "pending",
        last_error: null,
      });
    }
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
    });
    this.onChange(await this.all());
    this.flush();
  }

  async all() {
    const rows = await request(this.store("outbox").getAll());
    return rows.sort((a, b) => a.created_at - b.created_at);
  }

  async put(row) {
    await request(this.store("outbox", "readwrite").put(row));
  }

  // One sender at a time, across the agent's tabs too (Web Locks), so a row is never
  // posted twice at once; each round re-reads the store another tab may have emptied.
  async flush() {
    if (this.flushing) { this.again = true; return; } // rows added mid-round go next round
    this.flushing = true;
    this.again = false;
    clearTimeout(this.timer);
    let retry = false;
    const round = async () => {
      for (const row of await this.all()) {
        if (row.state !== "pending") continue;
        const fresh = await request(this.store("outbox").get(row.event_id));
        if (!fresh || fresh.state !== "pending") continue;
        if ((await this.send(fresh)) === "retry") { retry = true; break; }
      }
    };
    try {
      await (navigator.locks ? navigator.locks.request("aitl-outbox", round) : round());
    } finally {
      this.flushing = false;
      this.onChange(await this.all());
      if (retry) {
        this.delay = Math.min(this.delay * 2, 5000);
        this.timer = setTimeout(() => this.flush(), this.delay);
      } else {
        this.delay = 1000;
        if (this.again) setTimeout(() => this.flush(), 0);
      }
    }
  }

  async send(row) {
    row.attempts += 1;
    let status = 0;
    let answer = "";
    try {
      const headers = { "Content-Type": "application/json" };
      if (this.token) headers.Authorization = `Bearer ${this.token}`;
      const res = await fetch(`/v1/events/${row.event_type}`, {
        method: "POST", headers, body: JSON.stringify(row.body),
      });
      status = res.status;
      answer = await res.text();
    } catch (err) {
      answer = `network: ${err.message}`;
    }
    if (status === 202) {
      await request(this.store("outbox", "readwrite").delete(row.event_id));
      return "sent";
    }
    row.last_error = status ? `${status} ${answer.slice(0, 200)}` : answer;
    if (FINAL.has(status)) row.state = "failed";
    await this.put(row);
    this.onChange(await this.all());
    return row.state === "failed" ? "failed" : "retry";
  }

  async discard(eventId) {
    await request(this.store("outbox", "readwrite").delete(eventId));
    this.onChange(await this.all());
  }

  // The cases the agent sent from here and will annotate later (deferred mode).
  async defer(requestId, handledAt) {
    await request(this.store("deferred", "readwrite").put({ request_id: requestId, handled_at: handledAt }));
  }

  async deferred() {
    return request(this.store("deferred").getAll());
  }

  async undefer(requestId) {
    await request(this.store("deferred", "readwrite").delete(requestId));
  }
}
