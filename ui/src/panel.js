// The details panel: what selecting an element (a tap, or the select hook)
// opens, filled from the map and the agent's edge and workload answers.
import { fetchEdge, fetchWorkload } from './api.js';
import { renderEdge, renderGroup, renderLoading, renderWorkload, h } from './details.js';
import { ui, $, SEVERITY, currentWindow } from './state.js';
import { collapse, expand, hide, showPanel } from './actions.js';

const severityOf = (e) => SEVERITY[e.verdict === 'allowed' && e.outside_baseline ? 'outside_baseline' : e.verdict] ?? 0;

/**
 * Opens the details of an element: a drawn edge or node id, or an edge id of
 * the map (`src>dst:PROTO/port`). Resolves once the panel is filled.
 * @param {string} id
 */
export async function select(id) {
  const panel = $('details');
  showPanel(true);
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
    // The agent is asked about the most severe member edges only: one request each.
    const chosen = [...members].sort((a, b) => severityOf(b) - severityOf(a) || (a.id < b.id ? -1 : 1)).slice(0, 6);
    const answers = await Promise.all(chosen.map((edge) => fetchEdge(edge, win)
      .then((answer) => ({ edge, answer }), (err) => ({ edge, error: String(err?.message || err) }))));
    // Another element was selected while this one loaded.
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

/** A map edge not drawn as such (inside an aggregate) in the shape of a drawn edge. */
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
