// Labels on the drawn graph: text measured like Cytoscape measures it, the
// choice of which edge labels to show, and the overlap check (the hook the
// tests assert on).
import { ui, SEVERITY } from './state.js';
import { METRICS, edgeAnchor, placeLabels, overlappingPairs } from './layout.js';
import { EDGE_FONT } from './style.js';

// Cytoscape measures label text on a canvas: the same font strings on a canvas give the same widths.
const measureCtx = document.createElement('canvas').getContext('2d');

/** Width in px of `text` in a CSS font. */
export function measure(text, cssFont) {
  measureCtx.font = cssFont;
  return measureCtx.measureText(text).width;
}

/**
 * Applies the pending style of elements whose data changed inside `cy.batch()`.
 *
 * Needed before anything asks Cytoscape (3.35) for their bounds: after a batch,
 * `boundingBox()` skips an element's rendered-style recalculation (its rendered
 * style still counts as clean: the label change that dirties it is only seen
 * when the new style is applied) and applies the new style only afterwards, so
 * it caches bounds measured from the OLD label text. The renderer then sizes
 * the label's texture from those bounds: a longer new text is drawn cut off at
 * both ends, and spills into the neighbouring label's slot of the shared
 * texture (a fragment of one label drawn over another). Applying the style
 * (`pstyle` does) dirties the bounds and the rendered style, so the label is
 * measured anew on the next `boundingBox()` or frame.
 * @param {Iterable<object>} eles Cytoscape elements
 */
export function settleStyle(eles) {
  for (const ele of eles) if (!ele.removed()) ele.pstyle('label');
}

/** Label bounds of one element as Cytoscape computes them (model coordinates). */
function labelBox(ele) {
  settleStyle([ele]);
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
export function placeEdgeLabels(lay) {
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
  const changed = [];
  cy.batch(() => {
    edges.forEach((e) => {
      const want = placed.has(e.id()) ? e.data('label') : '';
      if (e.data('shown') !== want) {
        e.data('shown', want);
        changed.push(e);
      }
    });
  });
  settleStyle(changed);
  // Check with the boxes Cytoscape now has; drop any label still overlapping.
  for (let round = 0; round < 5; round++) {
    const pairs = labelOverlaps();
    if (!pairs.length) break;
    const dropped = [];
    cy.batch(() => {
      for (const [a, b] of pairs) {
        for (const id of [b, a]) {
          const el = cy.getElementById(id);
          if (el.isEdge() && el.data('shown')) {
            el.data('shown', '');
            dropped.push(el);
            break;
          }
        }
      }
    });
    settleStyle(dropped);
  }
}

/** Pairs of drawn elements whose label boxes overlap (Cytoscape's own bounding boxes). */
export function labelOverlaps() {
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
