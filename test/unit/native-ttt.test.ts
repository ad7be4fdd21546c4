/**
 * The TTT and DiT numerics of ttt.test.ts (finite differences, dual vs primal form, all five
 * stage lengths, remat, the fast-path matMul) on the native tensorflow backend.
 */
import { test } from 'node:test';
import { nativeSkip, useTestBackend } from '../native';

const skip = nativeSkip();
if (skip) test('TTT and DiT numerics on the tensorflow backend', { skip }, () => {});
else {
  useTestBackend('tensorflow');
  require('./ttt.test');
}
