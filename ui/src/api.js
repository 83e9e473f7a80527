// The agent's map API, on the page's own origin (relative URLs only: nothing
// else is ever fetched).

/** Error of an API answer that is not 2xx: carries the agent's JSON error text. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function getJSON(path, params = {}, signal) {
  const res = await fetch(`${path}${query(params)}`, { credentials: 'same-origin', signal });
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) throw new ApiError(res.status, body?.error || `${path}: HTTP ${res.status}`);
  return body;
}

/** GET /v1/map (`since`/`until` in ms, optional). */
export function fetchMap({ since, until } = {}, signal) {
  return getJSON('/v1/map', { since, until }, signal);
}

/** GET /v1/map/edge for one edge of the map. */
export function fetchEdge(edge, { since, until } = {}, signal) {
  return getJSON('/v1/map/edge', {
    src: edge.src, dst: edge.dst, protocol: edge.protocol, port: edge.port, since, until,
  }, signal);
}

/** GET /v1/map/workload for one workload id. */
export function fetchWorkload(id, { since, until } = {}, signal) {
  return getJSON('/v1/map/workload', { id, since, until }, signal);
}

/**
 * Splits a chunked text stream into JSON lines: returns a feeder taking text
 * chunks, calling `onLine(obj)` for every complete non-empty line (empty lines
 * are heartbeats; lines that are not JSON are reported to `onBad`).
 */
export function lineSplitter(onLine, onBad = () => {}) {
  let buf = '';
  return (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (!line) continue;
      let obj;
      try {
        obj = JSON.parse(line);
      } catch {
        onBad(line);
        continue;
      }
      onLine(obj);
    }
  };
}

/**
 * Follows GET /v1/map/follow: reads the JSON lines as they come, and
 * reconnects with exponential backoff (1 s doubling to 30 s, reset once a
 * connection delivers data) when the stream ends or fails. Increments missed
 * while disconnected cannot be replayed as increments, so before a reconnect
 * `resync()` is awaited (the caller refetches /v1/map). `since` makes the
 * agent send the window from that time first (as increments): only for a
 * caller that did not fetch /v1/map for it, else those would count twice.
 * @param {{since?: number, onLine: (obj: object) => void, resync?: () => Promise<void>,
 *          onState?: (state: 'connecting'|'live'|'retrying'|'stopped', info?: object) => void}} opts
 * @returns {{stop: () => void}}
 */
export function follow({ since, onLine, resync, onState = () => {} }) {
  let stopped = false;
  let ctrl = null;
  let delay = 1000;
  let from = since;
  let timer = null;
  // Whether a stream delivered since the last resync: only then can increments have been missed.
  let missed = false;

  async function connect() {
    if (stopped) return;
    if (missed && resync) {
      try {
        await resync();
        missed = false;
        from = undefined;
      } catch (err) {
        onState('retrying', { error: String(err?.message || err), delay });
        timer = setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
        return;
      }
    }
    if (stopped) return;
    ctrl = new AbortController();
    onState('connecting');
    let gotData = false;
    let error;
    try {
      const res = await fetch(`/v1/map/follow${query({ since: from })}`, {
        credentials: 'same-origin',
        signal: ctrl.signal,
      });
      if (!res.ok || !res.body) throw new ApiError(res.status, `follow: HTTP ${res.status}`);
      missed = true;
      onState('live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const feed = lineSplitter(onLine);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (value) {
          if (!gotData) {
            gotData = true;
            delay = 1000;
          }
          feed(value);
        }
      }
    } catch (err) {
      error = String(err?.message || err);
    }
    if (stopped) return;
    onState('retrying', { delay, error });
    timer = setTimeout(connect, delay);
    delay = Math.min(delay * 2, 30000);
  }

  connect();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      ctrl?.abort();
      onState('stopped');
    },
  };
}
