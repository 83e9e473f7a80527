import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lineSplitter } from '../../src/api.js';

test('follow lines: split across chunks, heartbeats skipped, bad lines reported', () => {
  const got = [];
  const bad = [];
  const feed = lineSplitter((o) => got.push(o), (l) => bad.push(l));
  feed('{"type":"edge","id":"a>b:TCP/1"}\n\n{"type":"lo');
  assert.equal(got.length, 1);
  feed('st","lost":3}\n   \nnot json\n{"type":"workload"');
  assert.deepEqual(got.map((o) => o.type), ['edge', 'lost']);
  assert.deepEqual(bad, ['not json']);
  feed(',"id":"x/Pod/y"}\n');
  assert.deepEqual(got[2], { type: 'workload', id: 'x/Pod/y' });
});
