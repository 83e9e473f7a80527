// window.bulkhead: the hooks the tests, the benchmark and the browser check
// drive the page with (see the hooks list of issue 19). Their names and
// answers are a contract: change them only with those callers.
import { VERDICTS, worstVerdict } from './model.js';
import { pngDataUrl, svgText, viewJSON } from './export.js';
import { ui, currentWindow, effectiveFilter } from './state.js';
import { labelOverlaps } from './labels.js';
import { collapse, collapseAll, expand, expandAll, hide, setFilter, unhide } from './actions.js';
import { setWindow } from './live.js';
import { select } from './panel.js';

let resolveReady;
const ready = new Promise((r) => {
  resolveReady = r;
});

/** The first view is laid out, rendered and interactive: resolves whenReady(), sets readyAt. */
export function markReady() {
  window.bulkhead.readyAt = performance.now();
  resolveReady();
}

// Cytoscape answers colours as rgb(…); the contract's colours are #rrggbb.
function hex(color) {
  const m = /^rgb\((\d+),\s*(\d+),\s*(\d+)\)$/.exec(color || '');
  if (!m) return color;
  return `#${m.slice(1).map((x) => Number(x).toString(16).padStart(2, '0')).join('')}`;
}

/** What is drawn now, colours read back from Cytoscape's style of each edge. */
function viewHook() {
  const cy = ui.cy;
  const nodes = [];
  for (const n of [...(ui.view?.nodes || []), ...(ui.view?.hiddenNodes || [])]) {
    nodes.push({ id: n.id, kind: n.kind, label: n.label, namespace: n.namespace, parent: n.kind === 'workload' ? n.parent : null,
      collapsed: n.collapsed, hidden: n.hidden });
  }
  const edges = (ui.view?.edges || []).map((e) => {
    const el = cy.getElementById(e.id);
    return {
      id: e.id, source: e.source, target: e.target, verdict: e.verdict, outside_baseline: e.outside_baseline,
      color: el.nonempty() ? hex(el.style('line-color')) : null,
      label: e.label, labelShown: el.nonempty() && !!el.data('shown'),
      policies: e.policies, deciding: e.deciding, ports: e.ports, members: e.members,
      flows: e.flows, first_seen: e.first_seen, last_seen: e.last_seen,
    };
  });
  return { nodes, edges };
}

function exportMeta() {
  return {
    node: ui.state.meta.node,
    window: { key: ui.windowKey, ...currentWindow(), agent: ui.state.meta.window },
    filter: effectiveFilter(),
    collapsed: [...ui.collapsed].sort(),
    hidden: [...ui.hidden].sort(),
  };
}

/** The JSON export (the toolbar's JSON button saves the same document). */
export const exportJSON = () => viewJSON(viewHook(), exportMeta());

/** Installs window.bulkhead (before the map loads: callers wait with whenReady()). */
export function installHooks() {
  window.bulkhead = {
    whenReady: () => ready,
    readyAt: null,
    view: viewHook,
    labelOverlaps,
    expand,
    collapse,
    expandAll,
    collapseAll,
    hide,
    unhide,
    setFilter,
    setWindow,
    select,
    get updates() {
      return ui.updates;
    },
    get error() {
      return ui.error;
    },
    /** The Cytoscape core (for debugging and the driver's real clicks). */
    get cy() {
      return ui.cy;
    },
    get timings() {
      return ui.timings;
    },
    exportJSON,
    exportPNG: async () => pngDataUrl(ui.cy),
    exportSVG: async () => svgText(ui.cy),
    verdicts: VERDICTS,
    worstVerdict,
  };
}
