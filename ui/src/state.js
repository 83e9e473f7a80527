// The page's shared mutable state, in one place: every module reads and
// writes `ui` here rather than keeping state of its own.
import { emptyState, namespacesOf } from './model.js';

/** Workload count above which the map opens in the all-namespaces (collapsed) view. */
export const COLLAPSE_ABOVE = 60;
/** The time windows of the toolbar (ms back from now; null: the whole retention). */
export const WINDOWS = { '5m': 5 * 60_000, '15m': 15 * 60_000, '1h': 3_600_000, '6h': 6 * 3_600_000, all: null };
/** Drawing and label order of the edge colours: the most severe on top, labelled first. */
export const SEVERITY = { allowed: 0, outside_baseline: 1, would_deny: 2, revoked: 3, denied: 4, quarantined: 5 };

export const ui = {
  /** The map as fetched and kept live (model.js createState/applyLine). */
  state: emptyState(),
  /** Namespaces drawn collapsed, by name. */
  collapsed: new Set(),
  /** Namespaces seen so far (a new one follows `defaultCollapsed`). */
  knownNs: new Set(),
  defaultCollapsed: false,
  /** Drawn ids hidden by the user. */
  hidden: new Set(),
  filter: { namespaces: null, verdicts: null, protocols: null, since: null, until: null },
  windowKey: 'all',
  /** What is drawn now (model.js buildView). */
  view: null,
  /** The Cytoscape core. */
  cy: null,
  /** Live lines waiting for the next frame, the frame (or timer) that applies them. */
  pending: [],
  /** Whether the details panel is open (it narrows the graph). */
  panelOpen: false,
  /** The refetch of the map under way (one at a time), if any. */
  refetching: null,
  frame: 0,
  lastFlush: null,
  /** More lines came than `pending` holds: the map is refetched instead. */
  overflow: false,
  updates: 0,
  lastUpdate: null,
  live: 'connecting',
  liveInfo: null,
  follower: null,
  error: null,
  selectedId: null,
  timings: {},
};

export const $ = (id) => document.getElementById(id);

export const nextFrame = () => new Promise((r) => requestAnimationFrame(() => r()));

/** The fetch window of the toolbar's choice (`since` only). */
export function currentWindow() {
  const span = WINDOWS[ui.windowKey];
  return span == null ? {} : { since: Date.now() - span };
}

/** The filter with the window's `since` folded in. */
export function effectiveFilter() {
  const f = { ...ui.filter };
  const w = currentWindow();
  if (w.since != null) f.since = Math.max(f.since ?? 0, w.since);
  return f;
}

/** New namespaces follow the current default (collapsed in the all-namespaces view). */
export function noteNamespaces() {
  for (const ns of namespacesOf(ui.state)) {
    if (!ui.knownNs.has(ns.name)) {
      ui.knownNs.add(ns.name);
      if (ui.defaultCollapsed) ui.collapsed.add(ns.name);
    }
  }
}
