// The Cytoscape stylesheet and the verdict colours of the contract.
import { METRICS, font } from './layout.js';

/** Edge colours by verdict (and outside_baseline when otherwise allowed). */
export const COLORS = {
  allowed: '#2e7d32',
  denied: '#c62828',
  revoked: '#ad1457',
  would_deny: '#ef6c00',
  outside_baseline: '#6a1b9a',
  quarantined: '#212121',
};

/** Legend entries: colour key → human text. */
export const LEGEND = [
  ['allowed', 'allowed'],
  ['denied', 'denied'],
  ['would_deny', 'would deny (audit)'],
  ['revoked', 'revoked'],
  ['outside_baseline', 'outside the baseline'],
  ['quarantined', 'quarantined'],
];

/** The stylesheet (a JSON array Cytoscape takes). */
export function stylesheet() {
  const M = METRICS;
  const s = [
    {
      selector: 'node',
      style: {
        'font-family': M.fontFamily,
        'text-wrap': 'wrap',
        'min-zoomed-font-size': 0,
      },
    },
    {
      selector: 'node[kind = "workload"]',
      style: {
        shape: 'ellipse',
        width: M.workload.size,
        height: M.workload.size,
        'background-color': '#90a4ae',
        'border-width': 1,
        'border-color': '#546e7a',
        label: 'data(label)',
        'font-size': M.workload.font,
        'line-height': M.workload.line / M.workload.font,
        'text-valign': 'bottom',
        'text-halign': 'center',
        'text-margin-y': M.workload.margin,
        color: '#263238',
      },
    },
    { selector: 'node[kind = "workload"][mode = "enforce"]', style: { 'background-color': '#4fc3f7' } },
    { selector: 'node[kind = "workload"][mode = "audit"]', style: { 'background-color': '#ffcc80' } },
    { selector: 'node[kind = "workload"][mode = "learn"]', style: { 'background-color': '#e0e0e0' } },
    { selector: 'node[?quarantined]', style: { 'border-width': 3, 'border-color': COLORS.quarantined } },
    {
      selector: 'node[kind = "external"]',
      style: {
        shape: 'diamond',
        width: M.external.size,
        height: M.external.size,
        'background-color': '#b0bec5',
        'border-width': 1,
        'border-color': '#607d8b',
        label: 'data(label)',
        'font-size': M.external.font,
        'line-height': M.external.line / M.external.font,
        'text-valign': 'bottom',
        'text-halign': 'center',
        'text-margin-y': M.external.margin,
        color: '#37474f',
      },
    },
    {
      // A collapsed namespace: a box fitted to its label.
      selector: 'node[kind = "namespace"][?collapsed]',
      style: {
        shape: 'round-rectangle',
        width: 'data(w)',
        height: 'data(h)',
        'background-color': '#eceff1',
        'border-width': 2,
        'border-color': '#78909c',
        label: 'data(label)',
        'font-size': M.nsCollapsed.font,
        'font-weight': 'bold',
        'line-height': M.nsCollapsed.line / M.nsCollapsed.font,
        'text-valign': 'center',
        'text-halign': 'center',
        color: '#263238',
      },
    },
    {
      // An expanded namespace: a compound node around its workloads.
      selector: 'node[kind = "namespace"][!collapsed]',
      style: {
        shape: 'round-rectangle',
        'background-color': '#f5f7f8',
        'background-opacity': 0.6,
        'border-width': 1,
        'border-color': '#90a4ae',
        padding: M.nsExpanded.pad,
        label: 'data(label)',
        'font-size': M.nsExpanded.font,
        'font-weight': 'bold',
        'line-height': M.nsExpanded.line / M.nsExpanded.font,
        'text-valign': 'top',
        'text-halign': 'center',
        'text-margin-y': -2,
        color: '#37474f',
      },
    },
    ...Object.entries(COLORS).map(([k, c]) => ({
      selector: `node[kind = "namespace"][internal = "${k}"]`,
      style: { 'border-color': c },
    })),
    {
      selector: 'edge',
      style: {
        width: 1.2,
        'curve-style': 'straight',
        'control-point-step-size': 24,
        'target-arrow-shape': 'triangle',
        'arrow-scale': 0.8,
        'line-color': COLORS.allowed,
        'target-arrow-color': COLORS.allowed,
        'line-opacity': 0.5,
      },
    },
    {
      // Label properties only on edges that show one (most do not: cheaper style).
      selector: 'edge[?shown], edge:selected, edge.hover',
      style: {
        label: 'data(shown)',
        'line-height': M.edge.line / M.edge.font,
        'font-family': M.fontFamily,
        'font-size': M.edge.font,
        'text-background-color': '#ffffff',
        'text-background-opacity': 0.85,
        'text-background-padding': M.edge.padding,
        'text-rotation': 'none',
        color: '#212121',
      },
    },
    ...Object.entries(COLORS).map(([k, c]) => ({
      selector: `edge[color = "${k}"]`,
      style: { 'line-color': c, 'target-arrow-color': c },
    })),
    // A pair with edges both ways: curved apart so both show.
    { selector: 'edge[bidir = 1]', style: { 'curve-style': 'bezier' } },
    { selector: 'edge[aggregated = 1]', style: { width: 'data(weight)' } },
    ...['would_deny', 'revoked', 'denied', 'quarantined', 'outside_baseline'].map((k, i) => ({
      selector: `edge[color = "${k}"]`,
      style: { 'line-opacity': 0.8 },
    })),
    { selector: 'edge[color = "outside_baseline"]', style: { 'line-style': 'dashed' } },
    // Edges showing their label are drawn over the others, so no line crosses the text.
    { selector: 'edge[?shown]', style: { 'z-index': 5 } },
    {
      selector: 'edge:selected, edge.hover',
      style: { label: 'data(label)', width: 3, 'line-opacity': 1, 'z-index': 10, 'text-background-opacity': 1 },
    },
    { selector: 'node:selected', style: { 'overlay-color': '#1565c0', 'overlay-opacity': 0.15, 'overlay-padding': 4 } },
  ];
  return s;
}

/** Font of edge labels, for measuring. */
export const EDGE_FONT = font(METRICS.edge.font);
