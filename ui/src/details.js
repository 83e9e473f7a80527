// The details panel (#details): what a click on an edge or a node shows.
// Everything is built with DOM APIs and textContent: names from the cluster
// are never parsed as HTML.
import { COLORS } from './style.js';
import { colorKey, portLabel } from './model.js';

/**
 * Creates an element: h('td', {class: 'x', 'data-verdict': 'denied'}, 'text', child…).
 * @param {string} tag
 * @param {object|null} [attrs]
 * @param {...(Node|string|number|null|undefined|false)} children
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'onclick') el.addEventListener('click', v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const fmtTime = (ms) => (ms == null ? '—' : new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'));
const fmtNum = (n) => (n == null ? '—' : Number(n).toLocaleString('en-US'));

function verdictBadge(verdict, outside = false) {
  const key = colorKey(verdict, outside);
  return h('span', { class: 'badge', 'data-verdict': key, style: `background:${COLORS[key] || '#757575'}` },
    key.replace('_', ' '));
}

function section(title, ...body) {
  return h('section', null, h('h3', null, title), ...body);
}

/** The policies of an edge, per verdict class: `[data-testid=policies]`. */
function edgePolicies(edges) {
  const rows = [];
  for (const e of edges) {
    for (const [cls, names] of Object.entries(e.policies || {})) {
      for (const n of names) rows.push([cls, n, e]);
    }
  }
  const seen = new Set();
  const list = h('ul', { 'data-testid': 'policies' });
  for (const [cls, n] of rows) {
    const k = `${cls}\u0000${n}`;
    if (seen.has(k)) continue;
    seen.add(k);
    list.append(h('li', { 'data-class': cls, 'data-policy': n }, verdictBadge(cls), ' ', h('code', null, n)));
  }
  if (!seen.size) list.append(h('li', { class: 'muted' }, 'no policy named (not isolated, or allowed by default)'));
  if (edges.some((e) => e.policies_truncated)) list.append(h('li', { class: 'muted' }, '… more (truncated by the agent)'));
  return list;
}

function endpoint(side) {
  if (!side) return '—';
  if (side.pod) return `${side.namespace}/${side.pod}`;
  return side.external ? `${side.ip} (external)` : side.ip;
}

/** The recent flows table: `[data-testid=flows] tr`, one row per flow. */
function flowsTable(flows) {
  const body = h('tbody', { 'data-testid': 'flows' });
  for (const f of flows) {
    const v = f.verdict === 'allowed' && f.audit?.verdict === 'would_deny' ? 'would_deny' : f.verdict;
    body.append(h('tr', { 'data-verdict': v },
      h('td', { title: f.end || '' }, (f.end || '').replace(/^.*T/, '').replace(/Z$/, '')),
      h('td', null, f.direction || ''),
      h('td', null, endpoint(f.src), f.src?.port ? `:${f.src.port}` : ''),
      h('td', null, endpoint(f.dst), f.dst?.port ? `:${f.dst.port}` : ''),
      h('td', null, String(f.protocol)),
      h('td', null, verdictBadge(v)),
      h('td', { class: 'num' }, fmtNum((f.packets?.orig ?? 0) + (f.packets?.reply ?? 0))),
      h('td', { class: 'num' }, fmtNum((f.bytes?.orig ?? 0) + (f.bytes?.reply ?? 0))),
      h('td', null, [...(f.policies || []), ...(f.audit?.policies || [])].map((p) => p.name).join(', ')
        + (f.drop_reason ? ` (${f.drop_reason})` : ''))));
  }
  return h('div', { class: 'scroll' }, h('table', { class: 'flows' },
    h('thead', null, h('tr', null, ...['end (UTC)', 'dir', 'src', 'dst', 'proto', 'verdict', 'packets', 'bytes', 'policies']
      .map((t) => h('th', null, t)))),
    body));
}

/** One side of explain's answer, in words: its verdict, the policies and rules behind it. */
function explainSide(side, direction) {
  if (!side) return h('p', { class: 'muted' }, 'no answer');
  const by = side.policies?.length ? side.policies.join(', ') : null;
  const summary = {
    not_isolated: `allow: no policy selects the pod for ${direction} (not isolated)`,
    allow: `allow${by ? `: isolated by ${by}, allowed by a rule` : ''}`,
    deny: `deny: isolated by ${by ?? 'a policy'}; no ${direction} rule allows this connection`,
  }[side.verdict] ?? `${side.verdict} (${side.reason})`;
  const rules = (list) => h('ul', { class: 'rules' }, list.map((r) => h('li', { 'data-policy': r.policy },
    h('code', null, r.text || `${r.policy} ${direction}[${r.rule}]`))));
  return h('div', { class: 'explain-side', 'data-verdict': side.verdict },
    h('p', null, h('strong', null, summary)),
    side.rules?.length ? h('div', null, h('h4', null, side.verdict === 'deny' ? 'denying rule' : 'allowing rules'), rules(side.rules)) : null,
    side.near_misses?.length ? h('div', null, h('h4', null, 'rules that came close (right peer or right port, not both)'), rules(side.near_misses)) : null,
    side.audit ? h('p', { class: 'muted' }, `audit: ${typeof side.audit === 'string' ? side.audit : JSON.stringify(side.audit)}`) : null);
}

/**
 * Fills the panel for a drawn edge.
 * @param {HTMLElement} panel #details
 * @param {object} ve the drawn edge (model view edge)
 * @param {object[]} members its member edges (state edges)
 * @param {{edge: object, answer?: object, error?: string}[]} answers /v1/map/edge answers of (some) members
 * @param {(id: string) => void} onSelectMember opens one member's details
 */
export function renderEdge(panel, ve, members, answers, onSelectMember) {
  panel.dataset.kind = 'edge';
  panel.dataset.id = ve.id;
  const body = [];
  body.push(h('h2', null, `${ve.source} → ${ve.target}`));
  body.push(h('p', null, verdictBadge(ve.verdict, ve.outside_baseline), ' ', h('span', { class: 'ports' }, ve.ports.join(' '))));
  body.push(h('p', { class: 'muted' }, `${fmtNum(ve.flows)} flows, ${fmtNum(ve.packets)} packets, ${fmtNum(ve.bytes)} bytes; `
    + `first ${fmtTime(ve.first_seen)}, last ${fmtTime(ve.last_seen)}`));
  if (ve.outside_baseline) body.push(h('p', { class: 'note' }, 'Outside the baseline: allowed, but no active baseline holds it.'));
  body.push(section('Deciding policies', edgePolicies(members)));
  if (members.length > 1) {
    const rows = members.map((e) => h('tr', { 'data-edge': e.id },
      h('td', null, h('a', { href: '#', onclick: (ev) => { ev.preventDefault(); onSelectMember(e.id); } }, `${e.src} → ${e.dst}`)),
      h('td', null, portLabel(e)),
      h('td', null, verdictBadge(e.verdict, e.outside_baseline)),
      h('td', { class: 'num' }, fmtNum(Object.values(e.classes).reduce((a, c) => a + c.flows, 0)))));
    body.push(section(`Edges (${members.length})`, h('table', { class: 'members' },
      h('thead', null, h('tr', null, h('th', null, 'edge'), h('th', null, 'port'), h('th', null, 'verdict'), h('th', null, 'flows'))),
      h('tbody', null, rows))));
  }
  const flows = [];
  for (const a of answers) for (const f of a.answer?.flows || []) flows.push(f);
  flows.sort((x, y) => (x.end < y.end ? 1 : x.end > y.end ? -1 : 0));
  const shownNote = answers.length < members.length
    ? h('p', { class: 'muted' }, `flows and explain of ${answers.length} of ${members.length} edges (the most severe); open an edge above for the others`)
    : null;
  body.push(section(`Recent flows (${flows.length})`, shownNote, flowsTable(flows)));
  const eg = h('div', { 'data-testid': 'explain-egress' });
  const ing = h('div', { 'data-testid': 'explain-ingress' });
  const texts = h('div', null);
  const add = (el, ...kids) => el.append(...kids.filter((k) => k !== null && k !== undefined));
  for (const a of answers) {
    const head = answers.length > 1 ? h('h4', null, `${portLabel(a.edge)} ${a.edge.src} → ${a.edge.dst}`) : null;
    if (a.error) {
      add(eg, head, h('p', { class: 'error' }, a.error));
      add(ing, head ? head.cloneNode(true) : null, h('p', { class: 'error' }, a.error));
      continue;
    }
    const ex = a.answer?.explain;
    if (!ex) {
      const why = a.answer?.explain_unavailable || 'unavailable';
      add(eg, head, h('p', { class: 'muted' }, `explain unavailable: ${why}`));
      add(ing, head ? head.cloneNode(true) : null, h('p', { class: 'muted' }, `explain unavailable: ${why}`));
      continue;
    }
    add(eg, head, explainSide(ex.egress, 'egress'));
    add(ing, head ? head.cloneNode(true) : null, explainSide(ex.ingress, 'ingress'));
    texts.append(h('div', null, head ? head.cloneNode(true) : null,
      h('p', null, 'Now: ', verdictBadge(ex.verdict === 'denied' ? 'denied' : 'allowed'),
        ex.example ? ` (for ${ex.example.from} → ${ex.example.to})` : ''),
      ex.text ? h('pre', { class: 'explain-text' }, ex.text) : null));
  }
  body.push(section('Explain: egress (source side)', eg));
  body.push(section('Explain: ingress (destination side)', ing));
  body.push(section('Explain', texts));
  panel.replaceChildren(closeButton(panel), ...body);
}

/**
 * Fills the panel for a workload.
 * @param {HTMLElement} panel
 * @param {object} w the workload object
 * @param {object|null} answer the /v1/map/workload answer
 * @param {string|null} error
 * @param {{hide: () => void}} actions
 */
export function renderWorkload(panel, w, answer, error, actions) {
  panel.dataset.kind = 'workload';
  panel.dataset.id = w.id;
  const wl = answer?.workload || w;
  const q = answer?.quarantine;
  const hasQ = Array.isArray(q) ? q.length > 0 : q != null;
  const quarantined = !!wl.quarantined || hasQ;
  const body = [h('h2', null, wl.id)];
  body.push(h('p', null, 'mode: ', h('strong', { 'data-testid': 'mode' }, wl.mode ?? 'none (not in the model)'),
    ' · quarantined: ', h('strong', { 'data-testid': 'quarantined', 'data-value': String(quarantined) }, quarantined ? 'yes' : 'no'),
    ' ', h('button', { type: 'button', onclick: actions.hide }, 'Hide')));
  if (hasQ) body.push(h('pre', { class: 'quarantine' }, JSON.stringify(q, null, 2)));
  if (Object.keys(wl.labels || {}).length) {
    body.push(h('p', { class: 'labels' }, Object.entries(wl.labels).map(([k, v]) => h('code', null, `${k}=${v}`))));
  }
  if (error) {
    body.push(h('p', { class: 'error' }, error));
    body.push(h('div', { 'data-testid': 'policies' }), h('div', { 'data-testid': 'proposal' }), h('div', { 'data-testid': 'diff' }));
    panel.replaceChildren(closeButton(panel), ...body);
    return;
  }
  if (answer?.pods?.length) {
    body.push(section('Pods', h('ul', null, answer.pods.map((p) => h('li', null, h('code', null, p.name), ` ${p.ips.join(', ')}${p.local ? '' : ' (other node)'}`)))));
  }
  const pol = h('ul', { 'data-testid': 'policies' });
  for (const p of answer?.policies || []) {
    pol.append(h('li', { 'data-policy': p.name }, h('code', null, p.name), ` ${p.kind}${p.tier ? ` tier ${p.tier}` : ''}`,
      ` · ${p.mode ?? ''} · ${(p.directions || []).join(', ')}`));
  }
  if (!answer?.policies?.length) pol.append(h('li', { class: 'muted' }, 'no policy selects it'));
  body.push(section('Policies selecting it', pol));
  const prop = answer?.proposal;
  const propEl = h('div', { 'data-testid': 'proposal' });
  const diffEl = h('div', { 'data-testid': 'diff', class: 'diff' });
  if (prop) {
    propEl.append(h('p', null, h('code', null, prop.policy_name), prop.in_force ? ' (a policy of that name is in force)' : ' (new)',
      ` · ${prop.changes ?? 0} change(s)`), h('pre', { class: 'yaml' }, prop.yaml || ''));
    for (const line of String(prop.diff || '').split('\n')) {
      const cls = line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : 'ctx';
      diffEl.append(h('div', { class: `line ${cls}` }, line || ' '));
    }
  } else {
    propEl.append(h('p', { class: 'muted' }, `no proposal: ${answer?.proposal_unavailable || 'unavailable'}`));
  }
  body.push(section('Proposed policy (from the learned history)', propEl));
  body.push(section('Diff against what is in force', diffEl));
  panel.replaceChildren(closeButton(panel), ...body);
}

/** Fills the panel for a namespace or an external group (no API call needed). */
export function renderGroup(panel, node, lines, actions) {
  panel.dataset.kind = node.kind;
  panel.dataset.id = node.id;
  const buttons = [];
  if (node.kind === 'namespace') {
    buttons.push(h('button', { type: 'button', onclick: actions.toggle }, node.collapsed ? 'Expand' : 'Collapse'));
  }
  buttons.push(h('button', { type: 'button', onclick: actions.hide }, 'Hide'));
  panel.replaceChildren(closeButton(panel), h('h2', null, node.id), h('p', null, ...buttons),
    h('ul', null, lines.map((l) => h('li', null, l))));
}

/** Shows a loading state. */
export function renderLoading(panel, kind, id) {
  panel.dataset.kind = kind;
  panel.dataset.id = id;
  panel.replaceChildren(closeButton(panel), h('h2', null, id), h('p', { class: 'muted' }, 'loading…'));
}

function closeButton(panel) {
  return h('button', { type: 'button', class: 'close', title: 'close', onclick: () => {
    panel.hidden = true;
    panel.dispatchEvent(new CustomEvent('closed'));
  } }, '×');
}
