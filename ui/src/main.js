// Wiring: fetches the map, draws it with Cytoscape, keeps it live from the
// follow stream (increments applied per animation frame in one cy.batch(),
// elements added/updated/removed by id, never a full redraw), the toolbar,
// the details panel, exports, and the test hooks (window.bulkhead).
import cytoscape from 'cytoscape';
import cytoscapeSvg from 'cytoscape-svg';
import { fetchMap, fetchEdge, fetchWorkload, follow } from './api.js';
import {
  VERDICTS, VERDICT_FILTERS, applyLine, buildView, createState, emptyState, namespacesOf, nsId,
  worstVerdict,
} from './model.js';
import { METRICS, edgeAnchor, layout, placeLabels, overlappingPairs } from './layout.js';
import { COLORS, EDGE_FONT, LEGEND, stylesheet } from './style.js';
import { renderEdge, renderGroup, renderLoading, renderWorkload, h } from './details.js';
import { download, pngDataUrl, svgText, viewJSON } from './export.js';

cytoscape.use(cytoscapeSvg);

/** Workload count above which the map opens in the all-namespaces (collapsed) view. */
const COLLAPSE_ABOVE = 60;
const WINDOWS = { '5m': 5 * 60_000, '15m': 15 * 60_000, '1h': 3_600_000, '6h': 6 * 3_600_000, all: null };
/** Lines buffered for the next frame at most; beyond, the map is refetched instead. */
const MAX_PENDING = 50_000;
const SEVERITY = { allowed: 0, outside_baseline: 1, would_deny: 2, revoked: 3, denied: 4, quarantined: 5 };

const $ = (id) => document.getElementById(id);

const ui = {
  state: emptyState(),
  collapsed: new Set(),
  knownNs: new Set(),
  defaultCollapsed: false,
  hidden: new Set(),
  filter: { namespaces: null, verdicts: null, protocols: null, since: null, until: null },
  windowKey: 'all',
  view: null,
  cy: null,
  pending: [],
  frame: 0,
  overflow: false,
  updates: 0,
  lastUpdate: null,
  live: 'connecting',
  follower: null,
  error: null,
  selectedId: null,
  timings: {},
};

// --- measuring text like Cytoscape does (canvas, same font strings) ---
const measureCtx = document.createElement('canvas').getContext('2d');
function measure(text, cssFont) {
  measureCtx.font = cssFont;
  return measureCtx.measureText(text).width;
}

// --- readiness ---
let resolveReady;
const ready = new Promise((r) => {
  resolveReady = r;
});
const nextFrame = () => new Promise((r) => requestAnimationFrame(() => r()));

// --- the graph ---
function initCy() {
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
    select(ev.target.id());
  });
  cy.on('tap', (ev) => {
    if (ev.target === cy) closeDetails();
  });
  cy.on('cxttap', 'node', (ev) => hide(ev.target.id()));
  cy.on('mouseover', 'edge', (ev) => ev.target.addClass('hover'));
  cy.on('mouseout', 'edge', (ev) => ev.target.removeClass('hover'));
}

function currentWindow() {
  const span = WINDOWS[ui.windowKey];
  return span == null ? {} : { since: Date.now() - span };
}

function effectiveFilter() {
  const f = { ...ui.filter };
  const w = currentWindow();
  if (w.since != null) f.since = Math.max(f.since ?? 0, w.since);
  return f;
}

/** New namespaces follow the current default (collapsed in the all-namespaces view). */
function noteNamespaces() {
  for (const ns of namespacesOf(ui.state)) {
    if (!ui.knownNs.has(ns.name)) {
      ui.knownNs.add(ns.name);
      if (ui.defaultCollapsed) ui.collapsed.add(ns.name);
    }
  }
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
 * positions, then places edge labels.
 */
function sync({ fit = false } = {}) {
  const t0 = performance.now();
  noteNamespaces();
  const view = buildView(ui.state, { collapsed: ui.collapsed, hidden: ui.hidden, filter: effectiveFilter() });
  const t1 = performance.now();
  const lay = layout(view, measure);
  const t2 = performance.now();
  const cy = ui.cy;
  const wantNodes = new Map(view.nodes.map((n) => [n.id, n]));
  const wantEdges = new Map(view.edges.map((e) => [e.id, e]));
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
        if (!sameData(ele, data)) ele.data(data);
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
        if (!sameData(ele, data)) ele.data(data);
      } else {
        addEdges.push({ group: 'edges', data: { ...data, shown: '' } });
      }
    }
    // Drawn in the order added: the most severe last, on top (cheaper than z-index rules).
    addEdges.sort((a, b) => (SEVERITY[a.data.color] ?? 0) - (SEVERITY[b.data.color] ?? 0));
    if (addEdges.length) cy.add(addEdges);
  });
  ui.view = view;
  const t3 = performance.now();
  if (fit) fitView(lay);
  const t4 = performance.now();
  placeEdgeLabels(lay);
  renderStatus();
  renderHiddenList();
  const t5 = performance.now();
  ui.timings.sync = { view: t1 - t0, layout: t2 - t1, elements: t3 - t2, fit: t4 - t3, labels: t5 - t4 };
}

/**
 * Fits the graph in the viewport (at most 1.5×). With a layout, from its
 * extent (cheap: no bounding box of every edge); else from Cytoscape's.
 */
function fitView(lay) {
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

/** Label bounds of one element as Cytoscape computes them (model coordinates). */
function labelBox(ele) {
  const bb = ele.boundingBox({ includeNodes: false, includeEdges: false, includeLabels: true,
    includeOverlays: false, includeUnderlays: false });
  return { id: ele.id(), x1: bb.x1, y1: bb.y1, x2: bb.x2, y2: bb.y2 };
}

/** Width of a label in the edge font (cached: labels repeat). */
const edgeLabelWidths = new Map();
function edgeLabelWidth(text) {
  let w = edgeLabelWidths.get(text);
  if (w === undefined) {
    w = Math.ceil(measure(text, EDGE_FONT));
    if (edgeLabelWidths.size > 50_000) edgeLabelWidths.clear();
    edgeLabelWidths.set(text, w);
  }
  return w;
}

/**
 * Shows the label of as many edges as fit without overlapping a node, a node
 * label or another shown edge label (most severe verdicts first, then those
 * already shown, then the busiest); the others show theirs on hover and
 * selection. Candidate boxes are the label's text box at the edge's midpoint
 * as Cytoscape computes it (text width, font size, background padding and
 * Cytoscape's 2 px margin); the result is then checked with Cytoscape's own
 * label bounding boxes, and any label still overlapping is dropped.
 * @param {object} lay the layout of the view (node bodies and label boxes)
 */
function placeEdgeLabels(lay) {
  const cy = ui.cy;
  const edges = cy.edges();
  const M = METRICS.edge;
  const halfH = M.font / 2 + M.padding + 3;
  // Expanded namespaces' labels sit on their compound box, which Cytoscape sizes from the
  // children: take those label boxes from Cytoscape (no edge needs projecting for them).
  const compound = new Set(ui.view.nodes.filter((n) => n.kind === 'namespace' && !n.collapsed).map((n) => n.id));
  const obstacles = [...lay.bodies, ...lay.labels.filter((b) => !compound.has(b.id))].map((b) => ({ ...b, id: `node:${b.id}` }));
  for (const id of compound) {
    const n = cy.getElementById(id);
    if (n.nonempty()) obstacles.push({ ...labelBox(n), id: `node:${id}` });
  }
  const shapes = new Map();
  for (const b of lay.bodies) {
    const n = cy.getElementById(b.id);
    shapes.set(b.id, { x: (b.x1 + b.x2) / 2, y: (b.y1 + b.y2) / 2, hw: (b.x2 - b.x1) / 2, hh: (b.y2 - b.y1) / 2,
      round: n.data('kind') !== 'namespace' });
  }
  const candidates = [];
  for (const ve of ui.view.edges) {
    const a = shapes.get(ve.source);
    const b = shapes.get(ve.target);
    if (!a || !b) continue;
    const anchor = edgeAnchor(a, b);
    if (!anchor) continue;
    const e = cy.getElementById(ve.id);
    const halfW = edgeLabelWidth(ve.label) / 2 + M.padding + 3;
    // A curved edge of a two-way pair: its label is up to 8 px off the straight line, either side.
    const off = e.data('bidir') ? 8 : 0;
    const ox = Math.abs(anchor.nx) * off;
    const oy = Math.abs(anchor.ny) * off;
    candidates.push({
      id: ve.id,
      box: { x1: anchor.x - halfW - ox, y1: anchor.y - halfH - oy, x2: anchor.x + halfW + ox, y2: anchor.y + halfH + oy },
      priority: (SEVERITY[ve.colorKey] ?? 0) * 1e9 + (e.data('shown') ? 1e8 : 0) + Math.min(ve.flows ?? 0, 1e8 - 1),
    });
  }
  // Only inside the laid-out extent, so that a fitted view shows every label whole.
  const bx1 = Math.min(0, ...lay.labels.map((b) => b.x1));
  const by1 = Math.min(0, ...lay.labels.map((b) => b.y1));
  const inside = candidates.filter((c) => c.box.x1 >= bx1 && c.box.y1 >= by1 && c.box.x2 <= lay.width && c.box.y2 <= lay.height + 12);
  const placed = placeLabels(inside, obstacles);
  cy.batch(() => {
    edges.forEach((e) => {
      const want = placed.has(e.id()) ? e.data('label') : '';
      if (e.data('shown') !== want) e.data('shown', want);
    });
  });
  // Check with the boxes Cytoscape now has; drop any label still overlapping.
  for (let round = 0; round < 5; round++) {
    const pairs = labelOverlaps();
    if (!pairs.length) break;
    cy.batch(() => {
      for (const [a, b] of pairs) {
        for (const id of [b, a]) {
          const el = cy.getElementById(id);
          if (el.isEdge() && el.data('shown')) {
            el.data('shown', '');
            break;
          }
        }
      }
    });
  }
}

/** Pairs of drawn elements whose label boxes overlap (Cytoscape's own bounding boxes). */
function labelOverlaps() {
  const boxes = [];
  ui.cy.elements().forEach((el) => {
    if (el.removed()) return;
    const text = el.isEdge() ? el.data('shown') : el.data('label');
    if (!text) return;
    if (el.isEdge() && el.hasClass('hover')) return;
    boxes.push(labelBox(el));
  });
  return overlappingPairs(boxes.filter((b) => b.x2 > b.x1 && b.y2 > b.y1));
}

// --- live updates ---
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
    sync({ fit: false });
    refreshFilterMenus();
  }
}

/**
 * Follows the live increments from now on (no `since`: the map just fetched
 * already counts everything before, and the follow stream would send the
 * window from `since` again as increments).
 */
function startFollow() {
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

function replaceState(doc) {
  // Lines not applied yet are counted in the new map already.
  ui.pending = [];
  ui.state = createState(doc);
  ui.lastUpdate = Date.now();
  ui.error = null;
  sync({ fit: false });
  refreshFilterMenus();
}

async function reload({ fit = true } = {}) {
  try {
    const doc = await fetchMap(currentWindow());
    ui.pending = [];
    ui.state = createState(doc);
    ui.lastUpdate = Date.now();
    ui.error = null;
    sync({ fit });
    refreshFilterMenus();
    startFollow();
  } catch (err) {
    ui.error = String(err?.message || err);
    renderStatus();
    throw err;
  }
}

// --- details ---
function closeDetails() {
  $('details').hidden = true;
  ui.selectedId = null;
  ui.cy.elements(':selected').unselect();
}

const severityOf = (e) => SEVERITY[e.verdict === 'allowed' && e.outside_baseline ? 'outside_baseline' : e.verdict] ?? 0;

/**
 * Opens the details of an element: a drawn edge or node id, or an edge id of
 * the map (`src>dst:PROTO/port`). Resolves once the panel is filled.
 * @param {string} id
 */
async function select(id) {
  const panel = $('details');
  panel.hidden = false;
  ui.selectedId = id;
  const cy = ui.cy;
  cy.elements(':selected').unselect();
  const ele = cy.getElementById(id);
  if (ele.nonempty()) ele.select();
  const win = currentWindow();
  const ve = ui.view?.edges.find((e) => e.id === id);
  const raw = ui.state.edges.get(id);
  if (ve || raw) {
    const drawn = ve || pseudoViewEdge(raw);
    const members = drawn.members.map((m) => ui.state.edges.get(m)).filter(Boolean);
    renderLoading(panel, 'edge', id);
    const chosen = [...members].sort((a, b) => severityOf(b) - severityOf(a) || (a.id < b.id ? -1 : 1)).slice(0, 6);
    const answers = await Promise.all(chosen.map((edge) => fetchEdge(edge, win)
      .then((answer) => ({ edge, answer }), (err) => ({ edge, error: String(err?.message || err) }))));
    if (ui.selectedId !== id) return;
    renderEdge(panel, drawn, members, answers, (m) => select(m));
    return;
  }
  const w = ui.state.workloads.get(id);
  if (w) {
    renderLoading(panel, 'workload', id);
    let answer = null;
    let error = null;
    try {
      answer = await fetchWorkload(id, win);
    } catch (err) {
      error = String(err?.message || err);
    }
    if (ui.selectedId !== id) return;
    renderWorkload(panel, w, answer, error, { hide: () => hide(id) });
    return;
  }
  if (id.startsWith('ns:')) {
    const name = id.slice(3);
    const node = ui.view.nodes.find((n) => n.id === id) || { id, kind: 'namespace', collapsed: ui.collapsed.has(name) };
    const wls = [...ui.state.workloads.values()].filter((x) => x.namespace === name).map((x) => x.id).sort();
    const lines = [`${wls.length} workloads`, ...(node.internalEdges ? [`${node.internalEdges} edges inside (worst: ${node.internalVerdict})`] : []), ...wls];
    renderGroup(panel, node, lines, {
      toggle: () => (ui.collapsed.has(name) ? expand(name) : collapse(name)).then(() => select(id)),
      hide: () => hide(id),
    });
    return;
  }
  const x = ui.state.externals.get(id);
  if (x) {
    const n = [...ui.state.edges.values()].filter((e) => e.src === id || e.dst === id).length;
    renderGroup(panel, { id, kind: 'external' }, [`${x.cidr}`, `${x.addresses ?? '?'} addresses seen`, `${n} edges`], { hide: () => hide(id) });
    return;
  }
  panel.dataset.kind = 'none';
  panel.replaceChildren(h('p', { class: 'error' }, `nothing named ${id} on the map`));
}

function pseudoViewEdge(e) {
  const flows = Object.values(e.classes).reduce((a, c) => a + c.flows, 0);
  return {
    id: e.id, source: e.src, target: e.dst, verdict: e.verdict, outside_baseline: e.verdict === 'allowed' && e.outside_baseline,
    ports: [e.port ? `${e.protocol}/${e.port}` : String(e.protocol)], members: [e.id], flows,
    packets: Object.values(e.classes).reduce((a, c) => a + c.packets, 0),
    bytes: Object.values(e.classes).reduce((a, c) => a + c.bytes, 0),
    first_seen: e.first_seen, last_seen: e.last_seen,
  };
}

// --- actions (toolbar and hooks) ---
async function settle() {
  await nextFrame();
}

const nsName = (ns) => (String(ns).startsWith('ns:') ? String(ns).slice(3) : String(ns));

function expand(ns) {
  ns = nsName(ns);
  ui.collapsed.delete(ns);
  sync({ fit: false });
  focus(nsId(ns));
  return settle();
}

/** Keeps a node in view after the layout moved it: centred, zoomed out if it does not fit. */
function focus(id) {
  const cy = ui.cy;
  const node = cy.getElementById(id);
  if (node.empty()) return;
  const bb = node.boundingBox();
  const fits = bb.w * cy.zoom() <= cy.width() - 40 && bb.h * cy.zoom() <= cy.height() - 40;
  if (fits) cy.center(node);
  else cy.fit(node, 20);
}

function collapse(ns) {
  ns = nsName(ns);
  ui.collapsed.add(ns);
  sync({ fit: false });
  focus(nsId(ns));
  return settle();
}

function expandAll() {
  ui.defaultCollapsed = false;
  ui.collapsed.clear();
  sync({ fit: true });
  return settle();
}

function collapseAll() {
  ui.defaultCollapsed = true;
  for (const ns of ui.knownNs) ui.collapsed.add(ns);
  sync({ fit: true });
  return settle();
}

function hide(id) {
  ui.hidden.add(id);
  if (ui.selectedId === id) closeDetails();
  sync({ fit: false });
  return settle();
}

function unhide(id) {
  ui.hidden.delete(id);
  sync({ fit: false });
  return settle();
}

function setFilter(f = {}) {
  for (const k of ['namespaces', 'verdicts', 'protocols', 'since', 'until']) {
    if (k in f) ui.filter[k] = f[k] ?? null;
  }
  refreshFilterMenus();
  sync({ fit: true });
  return settle();
}

async function setWindow(key) {
  if (!(key in WINDOWS)) throw new Error(`unknown window ${key}`);
  ui.windowKey = key;
  $('window').value = key;
  await reload({ fit: true });
  await settle();
}

// --- the view hook ---
function hex(color) {
  const m = /^rgb\((\d+),\s*(\d+),\s*(\d+)\)$/.exec(color || '');
  if (!m) return color;
  return `#${m.slice(1).map((x) => Number(x).toString(16).padStart(2, '0')).join('')}`;
}

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

// --- toolbar ---
function checkboxList(container, values, selected, onChange, labelOf = (v) => v) {
  const sel = selected ? new Set(selected) : null;
  container.replaceChildren(
    h('label', null, h('input', { type: 'checkbox', 'data-all': '1', ...(sel ? {} : { checked: '' }) }), ' all'),
    ...values.map((v) => h('label', null, h('input', { type: 'checkbox', value: v, ...(sel && sel.has(v) ? { checked: '' } : {}) }), ' ', labelOf(v))),
  );
  container.onchange = (ev) => {
    const boxes = [...container.querySelectorAll('input[value]')];
    if (ev.target.dataset.all) {
      boxes.forEach((b) => { b.checked = false; });
      onChange(null);
      return;
    }
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    container.querySelector('input[data-all]').checked = chosen.length === 0;
    onChange(chosen.length ? chosen : null);
  };
}

let menuKey = '';
function refreshFilterMenus() {
  const nss = namespacesOf(ui.state).map((n) => n.name);
  const protos = [...new Set([...ui.state.edges.values()].map((e) => String(e.protocol)))].sort();
  const key = JSON.stringify([nss, protos, ui.filter.namespaces, ui.filter.verdicts, ui.filter.protocols]);
  if (key === menuKey) return;
  menuKey = key;
  checkboxList($('ns-filter'), nss, ui.filter.namespaces, (v) => setFilter({ namespaces: v }));
  checkboxList($('verdict-filter'), VERDICT_FILTERS, ui.filter.verdicts, (v) => setFilter({ verdicts: v }), (v) => v.replace('_', ' '));
  checkboxList($('proto-filter'), protos, ui.filter.protocols, (v) => setFilter({ protocols: v }));
}

function renderHiddenList() {
  const list = [...ui.hidden].sort();
  $('hidden-summary').textContent = `hidden (${list.length})`;
  $('hidden-list').replaceChildren(...(list.length ? list.map((id) => h('div', null,
    h('button', { type: 'button', onclick: () => unhide(id) }, 'show'), ' ', h('code', null, id)))
    : [h('span', { class: 'muted' }, 'nothing hidden (right-click a node to hide it)')]));
}

function renderLegend() {
  $('legend').replaceChildren(...LEGEND.map(([k, text]) => h('span', { class: 'item', 'data-verdict': k },
    h('span', { class: `sw${k === 'outside_baseline' ? ' dashed' : ''}`, style: `background:${COLORS[k]};border-color:${COLORS[k]}` }), text)),
  h('div', { class: 'muted' }, 'a collapsed namespace\'s border: the worst verdict inside it · workload fill: enforce blue, audit orange, learn grey · right-click hides'));
}

function renderStatus() {
  const s = ui.view?.stats;
  const parts = [];
  if (ui.state.meta.node) parts.push(`node ${ui.state.meta.node}`);
  if (s) {
    parts.push(`${s.namespaces} namespaces, ${s.totalWorkloads} workloads (${s.workloads} drawn), ${s.externals} external groups`);
    parts.push(`${s.edges} edges (${s.drawnEdges} drawn)`);
    if (s.hidden) parts.push(`${s.hidden} hidden`);
  }
  if (ui.lastUpdate) parts.push(`updated ${new Date(ui.lastUpdate).toLocaleTimeString()}`);
  parts.push(`live: ${ui.live}${ui.live === 'retrying' && ui.liveInfo?.delay ? ` in ${Math.round(ui.liveInfo.delay / 1000)} s` : ''}`);
  parts.push(`${ui.updates} updates`);
  parts.push(`lost ${ui.state.lost}`);
  const status = $('status');
  status.replaceChildren(parts.join(' · '));
  if (ui.error) status.append(' · ', h('span', { class: 'bad' }, ui.error));
  if (ui.state.lost) status.dataset.lost = String(ui.state.lost);
}

function wireToolbar() {
  $('window').addEventListener('change', (ev) => setWindow(ev.target.value).catch(() => {}));
  $('expand-all').addEventListener('click', () => expandAll());
  $('collapse-all').addEventListener('click', () => collapseAll());
  $('fit').addEventListener('click', () => fitView());
  $('export-png').addEventListener('click', () => download('bulkhead-map.png', pngDataUrl(ui.cy)));
  $('export-svg').addEventListener('click', () => download('bulkhead-map.svg', svgText(ui.cy), 'image/svg+xml'));
  $('export-json').addEventListener('click', () => download('bulkhead-map.json',
    JSON.stringify(viewJSON(viewHook(), exportMeta()), null, 2), 'application/json'));
  $('details').addEventListener('closed', () => closeDetails());
  // Age out edges that leave a sliding window.
  setInterval(() => {
    if (ui.windowKey !== 'all' && ui.view) sync({ fit: false });
  }, 15_000);
}

// --- hooks ---
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
  exportJSON: () => viewJSON(viewHook(), exportMeta()),
  exportPNG: async () => pngDataUrl(ui.cy),
  exportSVG: async () => svgText(ui.cy),
  verdicts: VERDICTS,
  worstVerdict,
};

async function start() {
  initCy();
  renderLegend();
  wireToolbar();
  for (let attempt = 0; ; attempt++) {
    try {
      const t0 = performance.now();
      const doc = await fetchMap(currentWindow());
      const t1 = performance.now();
      ui.state = createState(doc);
      ui.timings.start = { scriptStart: t0, fetch: t1 - t0, state: performance.now() - t1 };
      break;
    } catch (err) {
      ui.error = `cannot load the map: ${err?.message || err}`;
      renderStatus();
      await new Promise((r) => setTimeout(r, Math.min(30_000, 1000 * 2 ** attempt)));
    }
  }
  ui.error = null;
  ui.lastUpdate = Date.now();
  ui.defaultCollapsed = ui.state.workloads.size > COLLAPSE_ABOVE;
  sync({ fit: true });
  refreshFilterMenus();
  ui.timings.start.synced = performance.now();
  // Ready once Cytoscape has drawn the view (its 'render' event), and the
  // browser has had a frame to put it on the screen.
  await new Promise((r) => {
    ui.cy.one('render', () => {
      ui.timings.start.rendered = performance.now();
      r();
    });
    // Nothing to draw (an empty map, a zero-size container) may emit no render: do not wait forever.
    setTimeout(r, ui.cy.elements().empty() ? 50 : 5000);
  });
  await nextFrame();
  window.bulkhead.readyAt = performance.now();
  resolveReady();
  startFollow();
}

start();
