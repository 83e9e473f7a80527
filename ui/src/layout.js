// The layout: pure, deterministic and fast (no force simulation). Namespaces
// are blocks on a table whose column count gives the picture a landscape
// shape; workloads sit on a grid inside their (expanded) namespace block;
// external address groups get their own column on the right. Every spacing is
// derived from the widths of the labels (measured by the function the caller
// passes: the browser's canvas measureText, or an estimate under node), so node
// labels cannot overlap at any zoom. Edge labels are placed afterwards by
// `placeLabels` (greedy, most important first; an edge whose label would
// overlap another label or a node shows it only on hover/selection).

/** Sizes and fonts shared with the Cytoscape style (style.js). */
export const METRICS = {
  fontFamily: 'Helvetica, Arial, sans-serif',
  workload: { size: 18, font: 10, line: 12, margin: 3 },
  external: { size: 20, font: 10, line: 12, margin: 3 },
  nsCollapsed: { font: 12, line: 15, padX: 12, padY: 8 },
  nsExpanded: { font: 12, line: 15, pad: 14, margin: 4 },
  edge: { font: 9, line: 11, padding: 2 },
  cellGap: { x: 22, y: 16 },
  /** Gaps when few workloads are drawn: room for edge labels between them. */
  roomyGap: { x: 56, y: 34 },
  roomyBelow: 60,
  blockGap: 70,
  aspect: 1.6,
};

/** A CSS font string for a size and weight. */
export function font(size, weight = 'normal') {
  return `${weight} ${size}px ${METRICS.fontFamily}`;
}

/**
 * A text width estimate for environments without a canvas (node tests):
 * generous (0.62 em per character), so layouts made with it are never tighter
 * than the real ones.
 * @param {string} text
 * @param {string} cssFont e.g. `bold 12px Helvetica`
 */
export function estimateWidth(text, cssFont) {
  const m = /(\d+(?:\.\d+)?)px/.exec(cssFont);
  const size = m ? Number(m[1]) : 10;
  const bold = /bold/.test(cssFont) ? 1.08 : 1;
  return Math.ceil(text.length * size * 0.62 * bold);
}

/** Width and height of a (possibly multi-line) label. */
export function labelSize(text, cssFont, lineHeight, measure = estimateWidth) {
  const lines = String(text).split('\n');
  let w = 0;
  for (const l of lines) w = Math.max(w, measure(l, cssFont));
  return { w: Math.ceil(w), h: lines.length * lineHeight };
}

/**
 * Lays out a view.
 * @param {{nodes: object[]}} view from model.buildView
 * @param {(text: string, font: string) => number} [measure]
 * @returns {{positions: Map<string,{x:number,y:number}>, sizes: Map<string,{w:number,h:number}>,
 *            labels: {id:string,x1:number,y1:number,x2:number,y2:number}[],
 *            bodies: {id:string,x1:number,y1:number,x2:number,y2:number}[],
 *            width:number, height:number}}
 *   positions of leaf nodes (workloads, collapsed namespaces, externals);
 *   sizes of collapsed namespace nodes (fitted to their label); the estimated
 *   label boxes and node bodies (for tests and label placement).
 */
export function layout(view, measure = estimateWidth) {
  const M = METRICS;
  const positions = new Map();
  const sizes = new Map();
  const labels = [];
  const bodies = [];

  const wlCount = view.nodes.filter((n) => n.kind === 'workload').length;
  const gap = wlCount <= M.roomyBelow ? M.roomyGap : M.cellGap;
  const children = new Map();
  const blocksNs = [];
  const externals = [];
  for (const n of view.nodes) {
    if (n.kind === 'namespace') blocksNs.push(n);
    else if (n.kind === 'external') externals.push(n);
    else if (n.kind === 'workload' && n.parent) {
      if (!children.has(n.parent)) children.set(n.parent, []);
      children.get(n.parent).push(n);
    }
  }

  // 1. Each namespace as a block: its size, and a function placing it at (x, y) (top left).
  const blocks = blocksNs.map((ns) => {
    const kids = children.get(ns.id) || [];
    if (ns.collapsed || kids.length === 0) {
      const ls = labelSize(ns.label, font(M.nsCollapsed.font, 'bold'), M.nsCollapsed.line, measure);
      const w = ls.w + 2 * M.nsCollapsed.padX;
      const h = ls.h + 2 * M.nsCollapsed.padY;
      sizes.set(ns.id, { w, h });
      return {
        w, h,
        place(x, y) {
          const cx = x + w / 2;
          const cy = y + h / 2;
          positions.set(ns.id, { x: cx, y: cy });
          const box = { id: ns.id, x1: x, y1: y, x2: x + w, y2: y + h };
          labels.push(box);
          bodies.push(box);
        },
      };
    }
    const wf = font(M.workload.font);
    const kidLabels = kids.map((k) => labelSize(k.label, wf, M.workload.line, measure));
    const maxLw = Math.max(M.workload.size, ...kidLabels.map((s) => s.w));
    const maxLh = Math.max(...kidLabels.map((s) => s.h));
    const cellW = maxLw + gap.x;
    const cellH = M.workload.size + M.workload.margin + maxLh + gap.y;
    const cols = Math.max(1, Math.min(kids.length, Math.round(Math.sqrt((kids.length * cellH) / cellW * 1.3)) || 1));
    const rows = Math.ceil(kids.length / cols);
    const head = labelSize(ns.label, font(M.nsExpanded.font, 'bold'), M.nsExpanded.line, measure);
    const pad = M.nsExpanded.pad;
    const innerW = cols * cellW;
    const innerH = rows * cellH;
    const w = Math.max(innerW + 2 * pad, head.w + 2);
    const h = head.h + M.nsExpanded.margin + innerH + 2 * pad;
    return {
      w, h,
      place(x, y) {
        const top = y + head.h + M.nsExpanded.margin;
        const left = x + (w - innerW) / 2;
        labels.push({ id: ns.id, x1: x + w / 2 - head.w / 2, y1: y, x2: x + w / 2 + head.w / 2, y2: y + head.h });
        kids.forEach((k, i) => {
          const c = i % cols;
          const r = Math.floor(i / cols);
          const cx = left + c * cellW + cellW / 2;
          const cy = top + pad + r * cellH + M.workload.size / 2;
          positions.set(k.id, { x: cx, y: cy });
          const half = M.workload.size / 2;
          bodies.push({ id: k.id, x1: cx - half, y1: cy - half, x2: cx + half, y2: cy + half });
          const ls = kidLabels[i];
          const ly = cy + half + M.workload.margin;
          labels.push({ id: k.id, x1: cx - ls.w / 2, y1: ly, x2: cx + ls.w / 2, y2: ly + ls.h });
        });
      },
    };
  });

  // 2. The table of blocks: the column count whose picture is closest to the aspect.
  const G = M.blockGap;
  let best = null;
  for (let c = 1; c <= Math.max(1, blocks.length); c++) {
    const colW = new Array(c).fill(0);
    const rowH = new Array(Math.ceil(blocks.length / c)).fill(0);
    blocks.forEach((b, i) => {
      colW[i % c] = Math.max(colW[i % c], b.w);
      rowH[Math.floor(i / c)] = Math.max(rowH[Math.floor(i / c)], b.h);
    });
    const W = colW.reduce((a, b) => a + b, 0) + (c - 1) * G;
    const H = rowH.reduce((a, b) => a + b, 0) + Math.max(0, rowH.length - 1) * G;
    const score = Math.abs(Math.log((W || 1) / (H || 1)) - Math.log(M.aspect));
    if (!best || score < best.score - 1e-9) best = { c, colW, rowH, W, H, score };
  }
  let width = 0;
  let height = 0;
  if (blocks.length) {
    const colX = [];
    let acc = 0;
    for (const w of best.colW) {
      colX.push(acc);
      acc += w + G;
    }
    const rowY = [];
    acc = 0;
    for (const h of best.rowH) {
      rowY.push(acc);
      acc += h + G;
    }
    blocks.forEach((b, i) => {
      const c = i % best.c;
      const r = Math.floor(i / best.c);
      // Centred in its cell.
      b.place(colX[c] + (best.colW[c] - b.w) / 2, rowY[r] + (best.rowH[r] - b.h) / 2);
    });
    width = best.W;
    height = best.H;
  }

  // 3. External groups: columns on the right, as few as fit the height of the namespaces.
  if (externals.length) {
    const ef = font(M.external.font);
    const ls = externals.map((x) => labelSize(x.label, ef, M.external.line, measure));
    const colW = Math.max(M.external.size, ...ls.map((s) => s.w)) + M.cellGap.x;
    const cellH = M.external.size + M.external.margin + Math.max(...ls.map((s) => s.h)) + M.cellGap.y + 6;
    const perCol = Math.max(1, Math.min(externals.length, Math.floor((height || cellH) / cellH) || 1));
    const cols = Math.ceil(externals.length / perCol);
    const x0 = blocks.length ? width + G : 0;
    const total = perCol * cellH;
    const y0 = Math.max(0, (height - total) / 2);
    externals.forEach((n, i) => {
      const x = x0 + Math.floor(i / perCol) * colW + colW / 2;
      const cy = y0 + (i % perCol) * cellH + M.external.size / 2;
      positions.set(n.id, { x, y: cy });
      const half = M.external.size / 2;
      bodies.push({ id: n.id, x1: x - half, y1: cy - half, x2: x + half, y2: cy + half });
      const ly = cy + half + M.external.margin;
      labels.push({ id: n.id, x1: x - ls[i].w / 2, y1: ly, x2: x + ls[i].w / 2, y2: ly + ls[i].h });
    });
    width = x0 + cols * colW;
    height = Math.max(height, y0 + total);
  }
  return { positions, sizes, labels, bodies, width, height };
}

/** Whether two boxes {x1,y1,x2,y2} overlap (touching edges do not count). */
export function overlaps(a, b) {
  return a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;
}

/**
 * A uniform-grid spatial index over boxes, for overlap queries in O(local).
 */
export class BoxIndex {
  /** @param {number} [cell] grid cell size in model units */
  constructor(cell = 64) {
    this.cell = cell;
    this.grid = new Map();
  }

  *cells(b) {
    const c = this.cell;
    for (let gx = Math.floor(b.x1 / c); gx <= Math.floor(b.x2 / c); gx++) {
      for (let gy = Math.floor(b.y1 / c); gy <= Math.floor(b.y2 / c); gy++) yield `${gx},${gy}`;
    }
  }

  /** Adds a box (with an `id`). */
  add(b) {
    for (const k of this.cells(b)) {
      if (!this.grid.has(k)) this.grid.set(k, []);
      this.grid.get(k).push(b);
    }
  }

  /** The boxes overlapping `b` (each once), except those with `b`'s id. */
  hits(b) {
    const out = new Set();
    for (const k of this.cells(b)) {
      for (const o of this.grid.get(k) || []) if (o.id !== b.id && overlaps(o, b)) out.add(o);
    }
    return [...out];
  }
}

/**
 * Greedy label placement: candidates in priority order (highest first, then
 * by id); a candidate is placed unless its box overlaps an obstacle or an
 * already placed label (boxes sharing a candidate's id never conflict with it).
 * @param {{id:string, box:{x1:number,y1:number,x2:number,y2:number}, priority:number}[]} candidates
 * @param {{id:string,x1:number,y1:number,x2:number,y2:number}[]} obstacles
 * @returns {Set<string>} ids of the placed candidates
 */
export function placeLabels(candidates, obstacles) {
  const index = new BoxIndex(64);
  for (const o of obstacles) index.add(o);
  const order = [...candidates].sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const placed = new Set();
  for (const c of order) {
    const box = { id: c.id, x1: c.box.x1, y1: c.box.y1, x2: c.box.x2, y2: c.box.y2 };
    if (!(box.x2 > box.x1 && box.y2 > box.y1)) continue;
    if (index.hits(box).some((o) => !c.ignore || !c.ignore.has(o.id))) continue;
    index.add(box);
    placed.add(c.id);
  }
  return placed;
}

/**
 * All overlapping pairs among boxes, each pair once as [idA, idB] with idA < idB.
 * @param {{id:string,x1:number,y1:number,x2:number,y2:number}[]} boxes
 */
export function overlappingPairs(boxes) {
  const index = new BoxIndex(64);
  const pairs = [];
  const seen = new Set();
  for (const b of boxes) {
    for (const o of index.hits(b)) {
      const [p, q] = o.id < b.id ? [o.id, b.id] : [b.id, o.id];
      const k = `${p}\u0000${q}`;
      if (!seen.has(k)) {
        seen.add(k);
        pairs.push([p, q]);
      }
    }
    index.add(b);
  }
  return pairs.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : 1));
}

/**
 * Where a straight edge's label sits: the middle of the visible segment
 * between the two node outlines (boxes: {x, y, hw, hh, round}; round nodes are
 * circles of radius hw), and the unit normal of the segment (bundled edges
 * drawn curved sit a few pixels along it).
 * @returns {{x:number, y:number, nx:number, ny:number}|null} null when the nodes overlap
 */
export function edgeAnchor(a, b) {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len = Math.hypot(dx, dy);
  if (len < 1e-6) return null;
  const reach = (n) => {
    if (n.round) return n.hw;
    const tx = Math.abs(dx) > 1e-9 ? n.hw / Math.abs(dx) : Infinity;
    const ty = Math.abs(dy) > 1e-9 ? n.hh / Math.abs(dy) : Infinity;
    return Math.min(tx, ty) * len;
  };
  const ra = reach(a);
  const rb = reach(b);
  if (ra + rb >= len) return null;
  const ux = dx / len;
  const uy = dy / len;
  const sx = a.x + ux * ra;
  const sy = a.y + uy * ra;
  const ex = b.x - ux * rb;
  const ey = b.y - uy * rb;
  return { x: (sx + ex) / 2, y: (sy + ey) / 2, nx: -uy, ny: ux };
}
