// What the user (toolbar, graph, details panel) and the hooks can do to the
// view: each changes `ui`, redraws, and resolves after the next frame.
import { nsId } from './model.js';
import { ui, $, nextFrame } from './state.js';
import { sync, focus } from './graph.js';
import { refreshFilterMenus, renderHiddenList, renderStatus } from './toolbar.js';

/** Redraws the graph from `ui` (graph.js sync), then the status line and the hidden list. */
export function refresh({ fit = false } = {}) {
  sync({ fit });
  renderStatus();
  renderHiddenList(unhide);
}

/** Rebuilds the filter menus if the map's namespaces or protocols, or the filter, changed. */
export function refreshMenus() {
  refreshFilterMenus(setFilter);
}

export function closeDetails() {
  showPanel(false);
  ui.selectedId = null;
  ui.cy.elements(':selected').unselect();
}

/**
 * Opens or closes the details panel; the graph, which shares the width
 * with it, is refitted when its size changes.
 * @param {boolean} open
 */
export function showPanel(open) {
  const panel = $('details');
  const wasOpen = ui.panelOpen;
  panel.hidden = !open;
  ui.panelOpen = open;
  if (wasOpen !== open) {
    ui.cy.resize();
    refresh({ fit: true });
  }
}

const settle = () => nextFrame();

const nsName = (ns) => (String(ns).startsWith('ns:') ? String(ns).slice(3) : String(ns));

/** Expands a namespace (`name` or `ns:name`), keeping it in view. */
export function expand(ns) {
  ns = nsName(ns);
  ui.collapsed.delete(ns);
  refresh({ fit: false });
  focus(nsId(ns));
  return settle();
}

/** Collapses a namespace (`name` or `ns:name`) into one node, keeping it in view. */
export function collapse(ns) {
  ns = nsName(ns);
  ui.collapsed.add(ns);
  refresh({ fit: false });
  focus(nsId(ns));
  return settle();
}

/** Expands every namespace, and new ones from now on. */
export function expandAll() {
  ui.defaultCollapsed = false;
  ui.collapsed.clear();
  refresh({ fit: true });
  return settle();
}

/** Collapses every namespace, and new ones from now on. */
export function collapseAll() {
  ui.defaultCollapsed = true;
  for (const ns of ui.knownNs) ui.collapsed.add(ns);
  refresh({ fit: true });
  return settle();
}

export function hide(id) {
  ui.hidden.add(id);
  if (ui.selectedId === id) closeDetails();
  refresh({ fit: false });
  return settle();
}

export function unhide(id) {
  ui.hidden.delete(id);
  refresh({ fit: false });
  return settle();
}

/** Sets the given filter fields (`null`: no filtering on that field); the others stay. */
export function setFilter(f = {}) {
  for (const k of ['namespaces', 'verdicts', 'protocols', 'since', 'until']) {
    if (k in f) ui.filter[k] = f[k] ?? null;
  }
  refreshMenus();
  refresh({ fit: true });
  return settle();
}
