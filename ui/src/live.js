// Keeping the map live: follow lines are buffered and applied in one batch
// per animation frame (at most every LIVE_INTERVAL ms), and the map is
// refetched when the stream resyncs, overflows, or the window changes.
import { fetchMap, follow } from './api.js';
import { applyLine, createState } from './model.js';
import { ui, $, WINDOWS, currentWindow, nextFrame } from './state.js';
import { refresh, refreshMenus } from './actions.js';
import { renderStatus } from './toolbar.js';

/** Lines buffered for the next frame at most; beyond, the map is refetched instead. */
const MAX_PENDING = 50_000;
/** Live lines are applied at most this often (ms): one batch per animation frame after that. */
const LIVE_INTERVAL = 400;

function onLine(obj) {
  if (ui.pending.length >= MAX_PENDING) {
    ui.overflow = true;
    return;
  }
  ui.pending.push(obj);
  if (ui.frame) return;
  const wait = (ui.lastFlush ?? 0) + LIVE_INTERVAL - performance.now();
  if (wait > 0) {
    ui.frame = setTimeout(() => {
      ui.frame = requestAnimationFrame(flush);
    }, wait);
  } else {
    ui.frame = requestAnimationFrame(flush);
  }
}

function flush() {
  ui.frame = 0;
  ui.lastFlush = performance.now();
  // Lines that come before the first map are kept for it.
  if (!ui.state) return;
  if (ui.overflow) {
    ui.overflow = false;
    ui.pending = [];
    refetch();
    return;
  }
  const lines = ui.pending;
  ui.pending = [];
  let changed = false;
  for (const l of lines) {
    if (applyLine(ui.state, l)) {
      changed = true;
      ui.updates++;
    }
  }
  if (ui.state.gap) {
    // Increments were missed (lost, or merged before this follower
    // subscribed): only a fresh map repairs the counts.
    refetch();
    return;
  }
  if (changed) {
    ui.lastUpdate = Date.now();
    refresh({ fit: false });
    refreshMenus();
  }
}

/**
 * Follows the live increments from now on (no `since`: the map fetched
 * beside it counts everything before). Lines carry the map's revision, so
 * the map may be fetched before or after the subscription: lines it holds
 * already are skipped, and a revision missed in between is noticed (a
 * gap) and repaired by refetching the map. Resolves once subscribed (or
 * after the first failure, so a page without a live stream still loads).
 */
export function startFollow() {
  ui.follower?.stop();
  return new Promise((subscribed) => {
    ui.follower = follow({
      onLine,
      resync: refetch,
      onState: (s, info) => {
        ui.live = s;
        ui.liveInfo = info;
        if (s !== 'connecting') subscribed();
        renderStatus();
      },
    });
  });
}

/** Refetches the map of the current window (keeping the live stream). */
async function refetch() {
  if (ui.refetching) return ui.refetching;
  ui.refetching = (async () => {
    try {
      replaceState(await fetchMap(currentWindow()));
    } catch (err) {
      ui.error = String(err?.message || err);
      renderStatus();
    } finally {
      ui.refetching = null;
    }
  })();
  return ui.refetching;
}

/** Takes a freshly fetched map in place of the current one and redraws. */
function replaceState(doc, { fit = false } = {}) {
  ui.state = createState(doc);
  // Lines still pending are applied to it by revision (older ones skipped).
  if (ui.pending.length && !ui.frame) ui.frame = requestAnimationFrame(flush);
  ui.lastUpdate = Date.now();
  ui.error = null;
  refresh({ fit });
  refreshMenus();
}

/** Refetches the map of the current window, redraws it, and follows from there. */
export async function reload({ fit = true } = {}) {
  try {
    await startFollow();
    replaceState(await fetchMap(currentWindow()), { fit });
  } catch (err) {
    ui.error = String(err?.message || err);
    renderStatus();
    throw err;
  }
}

/** Switches the time window (a key of WINDOWS) and refetches the map for it. */
export async function setWindow(key) {
  if (!(key in WINDOWS)) throw new Error(`unknown window ${key}`);
  ui.windowKey = key;
  $('window').value = key;
  await reload({ fit: true });
  await nextFrame();
}
