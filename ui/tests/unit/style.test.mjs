import { test } from 'node:test';
import assert from 'node:assert/strict';
import { COLORS, LEGEND, stylesheet } from '../../src/style.js';
import { VERDICT_FILTERS } from '../../src/model.js';

test('verdict colours are the contract\'s', () => {
  assert.deepEqual(COLORS, {
    allowed: '#2e7d32', denied: '#c62828', revoked: '#ad1457', would_deny: '#ef6c00',
    outside_baseline: '#6a1b9a', quarantined: '#212121',
  });
  assert.deepEqual(LEGEND.map(([k]) => k).sort(), [...VERDICT_FILTERS].sort());
});

test('every colour key has its edge rule (line and arrow)', () => {
  const rules = stylesheet();
  for (const [k, c] of Object.entries(COLORS)) {
    const r = rules.find((x) => x.selector === `edge[color = "${k}"]` && x.style['line-color']);
    assert.ok(r, k);
    assert.equal(r.style['line-color'], c);
    assert.equal(r.style['target-arrow-color'], c);
  }
});
