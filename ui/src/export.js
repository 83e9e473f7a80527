// Exports of the current view: PNG (Cytoscape's renderer), SVG
// (cytoscape-svg), and JSON (the view as drawn, plus the window it covers).

/**
 * The drawn graph as a PNG data URL (the whole graph, at least 1× scale).
 * @param {import('cytoscape').Core} cy
 */
export function pngDataUrl(cy) {
  return cy.png({ output: 'base64uri', full: true, bg: '#ffffff', scale: 1, maxWidth: 8000, maxHeight: 8000 });
}

/**
 * The drawn graph as SVG text.
 * @param {import('cytoscape').Core} cy with the cytoscape-svg extension registered
 */
export function svgText(cy) {
  return cy.svg({ full: true, bg: '#ffffff', scale: 1 });
}

/**
 * The JSON export: schema, when, the window and filters, and the view.
 * @param {object} view the hook's view() (nodes and edges as drawn)
 * @param {object} meta {node, window, filter, collapsed, hidden}
 */
export function viewJSON(view, meta) {
  return {
    schema: 'bulkhead.map.view/v1',
    exported_at: Date.now(),
    ...meta,
    nodes: view.nodes,
    edges: view.edges,
  };
}

/** Makes the browser save `data` (a data URL, or text) as a file. */
export function download(name, data, type = 'application/octet-stream') {
  const url = data.startsWith('data:') ? data : URL.createObjectURL(new Blob([data], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  if (!data.startsWith('data:')) setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
