// The toolbar, the legend and the status line: rendering from `ui`, and the
// wiring of the static controls. Actions come in as arguments (this module
// imports none), so that the actions can re-render the toolbar.
import { VERDICT_FILTERS, namespacesOf } from './model.js';
import { COLORS, LEGEND } from './style.js';
import { h } from './details.js';
import { download, pngDataUrl, svgText } from './export.js';
import { ui, $ } from './state.js';
import { fitView } from './graph.js';

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

// What the menus show now: they are rebuilt only when it changes (not on every live batch).
let menuKey = '';

/**
 * The namespace, verdict and protocol menus, from the map and the filter.
 * @param {(f: object) => void} setFilter called with the changed filter field
 */
export function refreshFilterMenus(setFilter) {
  const nss = namespacesOf(ui.state).map((n) => n.name);
  const protos = [...new Set([...ui.state.edges.values()].map((e) => String(e.protocol)))].sort();
  const key = JSON.stringify([nss, protos, ui.filter.namespaces, ui.filter.verdicts, ui.filter.protocols]);
  if (key === menuKey) return;
  menuKey = key;
  checkboxList($('ns-filter'), nss, ui.filter.namespaces, (v) => setFilter({ namespaces: v }));
  checkboxList($('verdict-filter'), VERDICT_FILTERS, ui.filter.verdicts, (v) => setFilter({ verdicts: v }), (v) => v.replace('_', ' '));
  checkboxList($('proto-filter'), protos, ui.filter.protocols, (v) => setFilter({ protocols: v }));
}

/**
 * The menu of hidden elements, each with a button that shows it again.
 * @param {(id: string) => void} unhide
 */
export function renderHiddenList(unhide) {
  const list = [...ui.hidden].sort();
  $('hidden-summary').textContent = `hidden (${list.length})`;
  $('hidden-list').replaceChildren(...(list.length ? list.map((id) => h('div', null,
    h('button', { type: 'button', onclick: () => unhide(id) }, 'show'), ' ', h('code', null, id)))
    : [h('span', { class: 'muted' }, 'nothing hidden (right-click a node to hide it)')]));
}

export function renderLegend() {
  $('legend').replaceChildren(...LEGEND.map(([k, text]) => h('span', { class: 'item', 'data-verdict': k },
    h('span', { class: `sw${k === 'outside_baseline' ? ' dashed' : ''}`, style: `background:${COLORS[k]};border-color:${COLORS[k]}` }), text)),
  h('div', { class: 'muted' }, 'a collapsed namespace\'s border: the worst verdict inside it · workload fill: enforce blue, audit orange, learn grey · right-click hides'));
}

/** The status line: counts, freshness, the live stream's state, losses, the last error. */
export function renderStatus() {
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

/**
 * Wires the toolbar's buttons and window menu, the details panel's close,
 * and the periodic redraw that ages edges out of a sliding window.
 * @param {{setWindow, expandAll, collapseAll, closeDetails, refresh, exportJSON}} act
 *   `exportJSON` returns the document the JSON button saves
 */
export function wireToolbar(act) {
  $('window').addEventListener('change', (ev) => act.setWindow(ev.target.value).catch(() => {}));
  $('expand-all').addEventListener('click', () => act.expandAll());
  $('collapse-all').addEventListener('click', () => act.collapseAll());
  $('fit').addEventListener('click', () => fitView());
  $('export-png').addEventListener('click', () => download('bulkhead-map.png', pngDataUrl(ui.cy)));
  $('export-svg').addEventListener('click', () => download('bulkhead-map.svg', svgText(ui.cy), 'image/svg+xml'));
  $('export-json').addEventListener('click', () => download('bulkhead-map.json',
    JSON.stringify(act.exportJSON(), null, 2), 'application/json'));
  $('details').addEventListener('closed', () => act.closeDetails());
  setInterval(() => {
    if (ui.windowKey !== 'all' && ui.view) act.refresh({ fit: false });
  }, 15_000);
}
