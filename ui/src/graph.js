// The drawn graph: Cytoscape's set-up, and `sync`, which brings its elements
// to the current view by id (added, updated, removed; never a full redraw),
// then fitting and focusing.
import cytoscape from 'cytoscape';
import cytoscapeSvg from 'cytoscape-svg';
import { buildView } from './model.js';
import { layout } from './layout.js';
import { stylesheet } from './style.js';
import { ui, $, SEVERITY, effectiveFilter, noteNamespaces } from './state.js';
import { measure, placeEdgeLabels, settleStyle } from './labels.js';

cytoscape.use(cytoscapeSvg);

/**
 * Creates the Cytoscape core in `#cy` (`ui.cy`).
 * @param {{select: (id: string) => void, background: () => void, hide: (id: string) => void}} on
 *   a tap on an element, a tap on the background, a right-click on a node
 */
export function initCy(on) {
  ui.cy = cytoscape({
    container: $('cy'),
    style: stylesheet(),
    minZoom: 0.05,
    maxZoom: 4,
    boxSelectionEnabled: false,
    autoungrabify: true,
    selectionType: 'single',
  });
  const cy = ui.cy;
  cy.on('tap', 'node, edge', (ev) => {
    on.select(ev.target.id());
  });
  cy.on('tap', (ev) => {
    if (ev.target === cy) on.background();
  });
  cy.on('cxttap', 'node', (ev) => on.hide(ev.target.id()));
  cy.on('mouseover', 'edge', (ev) => ev.target.addClass('hover'));
  cy.on('mouseout', 'edge', (ev) => ev.target.removeClass('hover'));
}

const nodeData = (n, lay) => ({
  id: n.id,
  kind: n.kind,
  label: n.label,
  namespace: n.namespace,
  collapsed: n.collapsed,
  mode: n.mode ?? null,
  quarantined: !!n.quarantined,
  internal: n.internalVerdict ?? null,
  w: lay.sizes.get(n.id)?.w ?? null,
  h: lay.sizes.get(n.id)?.h ?? null,
});

const edgeData = (e, ids) => ({
  id: e.id,
  bidir: ids.has(`${e.target}>${e.source}`) ? 1 : 0,
  source: e.source,
  target: e.target,
  color: e.colorKey,
  verdict: e.verdict,
  label: e.label,
  aggregated: e.aggregated ? 1 : 0,
  weight: Math.min(6, 1.5 + Math.log10(e.members.length)),
});

function sameData(ele, data) {
  for (const [k, v] of Object.entries(data)) if (ele.data(k) !== v) return false;
  return true;
}

/**
 * Brings the drawn graph to the current view: removes what is gone, updates
 * what changed, adds what is new (by id), moves leaves to their layout
 * positions, then places edge labels. Sets `ui.view`.
 */
export function sync({ fit = false } = {}) {
  const t0 = performance.now();
  noteNamespaces();
  const view = buildView(ui.state, { collapsed: ui.collapsed, hidden: ui.hidden, filter: effectiveFilter() });
  const t1 = performance.now();
  const lay = layout(view, measure);
  const t2 = performance.now();
  const cy = ui.cy;
  const wantNodes = new Map(view.nodes.map((n) => [n.id, n]));
  const wantEdges = new Map(view.edges.map((e) => [e.id, e]));
  const changed = [];
  cy.batch(() => {
    const have = new Map();
    const drop = [];
    cy.elements().forEach((el) => {
      const id = el.id();
      if (el.isNode()) {
        const n = wantNodes.get(id);
        // Gone, or its parent changed (a node cannot be moved in place): (re-)add it.
        if (!n || (el.data('parent') ?? null) !== (n.kind === 'workload' ? n.parent : null)) drop.push(el);
        else have.set(id, el);
      } else if (!wantEdges.has(id)) drop.push(el);
      else have.set(id, el);
    });
    if (drop.length) {
      const gone = cy.collection(drop);
      // Removing a node removes its edges and children: forget those too.
      gone.union(gone.connectedEdges()).union(gone.descendants()).forEach((el) => have.delete(el.id()));
      cy.remove(gone);
    }
    const addNodes = [];
    for (const n of view.nodes) {
      const data = nodeData(n, lay);
      const ele = have.get(n.id);
      if (ele) {
        if (!sameData(ele, data)) {
          ele.data(data);
          changed.push(ele);
        }
        const pos = lay.positions.get(n.id);
        if (pos) {
          const p = ele.position();
          if (p.x !== pos.x || p.y !== pos.y) ele.position(pos);
        }
      } else {
        const parent = n.kind === 'workload' ? n.parent : null;
        addNodes.push({ group: 'nodes', data: { ...data, parent }, position: lay.positions.get(n.id) ?? { x: 0, y: 0 } });
      }
    }
    if (addNodes.length) cy.add(addNodes);
    const addEdges = [];
    for (const e of view.edges) {
      const data = edgeData(e, wantEdges);
      const ele = have.get(e.id);
      if (ele) {
        if (!sameData(ele, data)) {
          ele.data(data);
          changed.push(ele);
        }
      } else {
        addEdges.push({ group: 'edges', data: { ...data, shown: '' } });
      }
    }
    // Drawn in the order added: the most severe last, on top (cheaper than z-index rules).
    addEdges.sort((a, b) => (SEVERITY[a.data.color] ?? 0) - (SEVERITY[b.data.color] ?? 0));
    if (addEdges.length) cy.add(addEdges);
  });
  // Labels that changed are measured anew before any bounds are asked for (see settleStyle).
  settleStyle(changed);
  ui.view = view;
  const t3 = performance.now();
  if (fit) fitView(lay);
  const t4 = performance.now();
  placeEdgeLabels(lay);
  const t5 = performance.now();
  ui.timings.sync = { view: t1 - t0, layout: t2 - t1, elements: t3 - t2, fit: t4 - t3, labels: t5 - t4 };
}

/**
 * Fits the graph in the viewport (at most 1.5×). With a layout, from its
 * extent (cheap: no bounding box of every edge); else from Cytoscape's.
 */
export function fitView(lay) {
  const cy = ui.cy;
  if (!lay) {
    cy.fit(undefined, 24);
  } else {
    const pad = 24;
    const x1 = Math.min(0, ...lay.labels.map((b) => b.x1));
    const y1 = Math.min(0, ...lay.labels.map((b) => b.y1));
    const w = Math.max(1, lay.width - x1);
    const h = Math.max(1, lay.height - y1 + 12);
    const zoom = Math.min((cy.width() - 2 * pad) / w, (cy.height() - 2 * pad) / h);
    cy.zoom(zoom);
    cy.pan({ x: (cy.width() - w * cy.zoom()) / 2 - x1 * cy.zoom(), y: (cy.height() - h * cy.zoom()) / 2 - y1 * cy.zoom() });
  }
  if (cy.zoom() > 1.5) {
    cy.zoom(1.5);
    cy.center();
  }
}

/** Keeps a node in view after the layout moved it: centred, zoomed out if it does not fit. */
export function focus(id) {
  const cy = ui.cy;
  const node = cy.getElementById(id);
  if (node.empty()) return;
  const bb = node.boundingBox();
  const fits = bb.w * cy.zoom() <= cy.width() - 40 && bb.h * cy.zoom() <= cy.height() - 40;
  if (fits) cy.center(node);
  else cy.fit(node, 20);
}
