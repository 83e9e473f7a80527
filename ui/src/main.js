// The entry: sets up the graph, the toolbar and the hooks, loads the map
// (retrying until the agent answers), draws the first view, and then keeps
// it live. State lives in state.js; each concern in its own module:
// graph.js/labels.js (drawing), live.js (follow and refetch), actions.js
// (what can be done to the view), toolbar.js, panel.js (details), hooks.js.
import { fetchMap } from './api.js';
import { createState } from './model.js';
import { ui, COLLAPSE_ABOVE, currentWindow, nextFrame } from './state.js';
import { initCy } from './graph.js';
import { closeDetails, collapseAll, expandAll, hide, refresh, refreshMenus } from './actions.js';
import { renderLegend, renderStatus, wireToolbar } from './toolbar.js';
import { setWindow, startFollow } from './live.js';
import { select } from './panel.js';
import { exportJSON, installHooks, markReady } from './hooks.js';

installHooks();

async function start() {
  initCy({ select, background: closeDetails, hide });
  renderLegend();
  wireToolbar({ setWindow, expandAll, collapseAll, closeDetails, refresh, exportJSON });
  for (let attempt = 0; ; attempt++) {
    try {
      const t0 = performance.now();
      // The first fetch takes the map index.html preloads.
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
  refresh({ fit: true });
  refreshMenus();
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
  markReady();
  startFollow();
}

start();
