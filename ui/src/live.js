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
  if (ui.overflow) {
    ui.overflow = false;
    ui.pending = [];
    reload({ fit: false });
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
  if (changed) {
    ui.lastUpdate = Date.now();
    refresh({ fit: false });
    refreshMenus();
  }
}

/**
 * Follows the live increments from now on (no `since`: the map just fetched
 * already counts everything before, and the follow stream would send the
 * window from `since` again as increments).
 */
export function startFollow() {
  ui.follower?.stop();
  ui.follower = follow({
    onLine,
    resync: async () => {
      const doc = await fetchMap(currentWindow());
      replaceState(doc);
    },
    onState: (s, info) => {
      ui.live = s;
      ui.liveInfo = info;
      renderStatus();
    },
  });
}

/** Takes a freshly fetched map in place of the current one and redraws. */
function replaceState(doc, { fit = false } = {}) {
  // Lines not applied yet are counted in the new map already.
  ui.pending = [];
  ui.state = createState(doc);
  ui.lastUpdate = Date.now();
  ui.error = null;
  refresh({ fit });
  refreshMenus();
}

/** Refetches the map of the current window, redraws it, and follows from there. */
export async function reload({ fit = true } = {}) {
  try {
    replaceState(await fetchMap(currentWindow()), { fit });
    startFollow();
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
