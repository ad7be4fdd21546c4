/** The recipe's numbers: the zero-terminal-SNR schedule, the learning-rate schedule, one AdamW step by hand, bit-exact resume. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { initBackend, tf } from '../../src/backend';
import { ALPHAS_CUMPROD, scaledLinearBetas, snr } from '../../src/diffusion/schedule';
import { AdamW, clipGlobalNorm } from '../../src/optim/adamw';
import { learningRate } from '../../src/optim/schedule';
import { hasWeightDecay, isTttParam } from '../../src/model/params';
import { latestCompleteCheckpoint } from '../../src/checkpoint/store';
import { CLI, metricSteps, ROOT, tmpDir } from '../helpers';

test('zero-terminal-SNR schedule: SNR(999) = 0 and alphas_cumprod match the formula by hand', () => {
  assert.equal(ALPHAS_CUMPROD[999], 0);
  assert.equal(snr(999), 0);
  // By hand: betas_t = (sqrt(0.00085) + t/999 (sqrt(0.012) - sqrt(0.00085)))^2; a_t = prod (1 - betas);
  // s_t = sqrt(a_t); rescaled s'_t = (s_t - s_999) s_0 / (s_0 - s_999); alphas_cumprod = s'^2.
  const a = Math.sqrt(0.00085);
  const b = Math.sqrt(0.012);
  const prod: number[] = [];
  let p = 1;
  for (let t = 0; t < 1000; t++) {
    const beta = (a + (t / 999) * (b - a)) ** 2;
    p *= 1 - beta;
    prod.push(Math.sqrt(p));
  }
  const s0 = prod[0]!;
  const sT = prod[999]!;
  for (const t of [0, 1, 250, 500, 750, 998]) {
    const expected = (((prod[t]! - sT) * s0) / (s0 - sT)) ** 2;
    assert.ok(Math.abs(ALPHAS_CUMPROD[t]! - expected) < 1e-15, `t=${t}: ${ALPHAS_CUMPROD[t]} vs ${expected}`);
  }
  assert.ok(Math.abs(ALPHAS_CUMPROD[0]! - (1 - 0.00085)) < 1e-12, 'the first step is not rescaled');
  assert.equal(scaledLinearBetas()[0], 0.00085);
  assert.ok(Math.abs(scaledLinearBetas()[999]! - 0.012) < 1e-15);
  for (let t = 1; t < 1000; t++) assert.ok(ALPHAS_CUMPROD[t]! < ALPHAS_CUMPROD[t - 1]!, 'monotone');
});

test('learning rate: warmup, then linear or cosine decay to lr_end, at chosen steps', () => {
  const o = { peak: 1e-4, end: 1e-5, warmup: 100, total: 5000 };
  // Warmup: peak * step / warmup for the 1-based step.
  assert.equal(learningRate(1, { ...o, decay: 'linear' }), 1e-6);
  assert.equal(learningRate(50, { ...o, decay: 'linear' }), 5e-5);
  assert.equal(learningRate(100, { ...o, decay: 'linear' }), 1e-4);
  // After warmup, p = (step - 1 - warmup) / (total - warmup).
  const close = (x: number, y: number): void => assert.ok(Math.abs(x - y) < 1e-18, `${x} vs ${y}`);
  close(learningRate(101, { ...o, decay: 'linear' }), 1e-4);
  close(learningRate(2551, { ...o, decay: 'linear' }), 1e-4 - 0.5 * 9e-5);
  close(learningRate(2551, { ...o, decay: 'cosine' }), 1e-5 + 9e-5 * 0.5 * (1 + Math.cos(Math.PI * 0.5)));
  close(learningRate(1326, { ...o, decay: 'cosine' }), 1e-5 + 9e-5 * 0.5 * (1 + Math.cos(Math.PI * 0.25)));
  close(learningRate(5101, { ...o, decay: 'cosine' }), 1e-5);
  assert.equal(learningRate(3000, { ...o, decay: 'constant' }), 1e-4);
});

test('one AdamW step matches a hand computation, with weight-decay exclusions and both learning rates', async () => {
  await initBackend('cpu');
  try {
    const names = [
      'dit.layers.0.mlp.layer1.weight',
      'dit.layers.0.mlp.layer1.bias',
      'dit.layers.0.seq_modeling_block.ssm.ttt.W1',
      'dit.layers.0.seq_modeling_block.ssm.ttt.b1',
    ];
    assert.deepEqual(names.map(isTttParam), [false, false, true, true]);
    assert.deepEqual(names.map(hasWeightDecay), [true, false, true, false]);
    const w0 = [0.5, -1.25, 2.0, 0.75];
    const g0 = [0.1, -0.2, 0.3, -0.4];
    const opts = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 1e-4 };
    const lr = { base: 1e-3, ttt: 1e-2 };
    const info = new Map(
      names.map((n) => [n, { group: isTttParam(n) ? ('ttt' as const) : ('base' as const), decay: hasWeightDecay(n) }]),
    );
    const params = new Map(names.map((n, i) => [n, tf.tensor1d([w0[i]!])]));
    const opt = new AdamW(info, opts);
    for (let step = 1; step <= 2; step++) {
      const grads = new Map(names.map((n, i) => [n, tf.tensor1d([g0[i]! * step])]));
      opt.apply(params, grads, lr);
    }
    // By hand, two steps, PyTorch's AdamW: w *= 1 - lr*wd (if decayed); m, v moments; w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
    names.forEach((n, i) => {
      const l = info.get(n)!.group === 'ttt' ? lr.ttt : lr.base;
      let w = w0[i]!;
      let m = 0;
      let v = 0;
      for (let t = 1; t <= 2; t++) {
        const g = g0[i]! * t;
        if (info.get(n)!.decay) w *= 1 - l * opts.weightDecay;
        m = opts.beta1 * m + (1 - opts.beta1) * g;
        v = opts.beta2 * v + (1 - opts.beta2) * g * g;
        w -= (l / (1 - opts.beta1 ** t)) * (m / (Math.sqrt(v) / Math.sqrt(1 - opts.beta2 ** t) + opts.eps));
      }
      const got = params.get(n)!.dataSync()[0]!;
      assert.ok(Math.abs(got - w) < 1e-6 * Math.max(1, Math.abs(w)), `${n}: ${got} vs ${w}`);
    });
    // Global-norm clipping: norm sqrt(0.1^2+0.2^2+0.3^2+0.4^2) = sqrt(0.3), scaled to 0.1.
    const grads = new Map(names.map((n, i) => [n, tf.tensor1d([g0[i]!])]));
    const norm = clipGlobalNorm(grads, 0.1);
    assert.ok(Math.abs(norm - Math.sqrt(0.3)) < 1e-6);
    const after = Math.sqrt([...grads.values()].reduce((a, g) => a + g.square().sum().dataSync()[0]!, 0));
    assert.ok(Math.abs(after - 0.1) < 1e-6);
  } finally {
    await initBackend('auto');
  }
});

test('bit-exact resume on the CPU backend: 6 steps straight equal 4 steps (stopped at 4) + a fresh process resuming from 4', () => {
  const dump = tmpDir('bitexact');
  const run = (name: string, extra: string[] = []): string =>
    execFileSync(
      process.execPath,
      [
        CLI,
        'train',
        'configs/train/tiny/3s.toml',
        `--job.dump_folder=${dump}`,
        `--job.exp_name=${name}`,
        '--training.steps=6',
        '--checkpoint.interval=3',
        '--training.global_batch_size=1',
        '--runtime.backend=cpu',
        ...extra,
      ],
      { cwd: ROOT, env: { ...process.env, TTT_LOG_LEVEL: 'warn' }, stdio: 'pipe', encoding: 'utf8' },
    );
  const steps = (name: string): number[] => metricSteps(path.join(dump, name, '3s'));
  assert.match(run('straight'), /3s: steps 0->6 of 6 \(stage complete\)/);
  // The first run stops at k = 4 (its last checkpoint is step 4), the second resumes from k = 4:
  // it trains steps 5 and 6 only, so every step has exactly one metrics line.
  assert.match(run('resumed', ['--max-steps', '4']), /3s: steps 0->4 of 6, /);
  assert.deepEqual(steps('resumed'), [1, 2, 3, 4], 'the first run trained steps 1-4');
  const ckDir = path.join(dump, 'resumed', '3s', 'checkpoints');
  assert.equal(latestCompleteCheckpoint(ckDir)?.state.step, 4, 'the first run left a checkpoint at step 4');
  assert.match(run('resumed'), /3s: steps 4->6 of 6 \(stage complete\)/);
  assert.deepEqual(steps('resumed'), [1, 2, 3, 4, 5, 6], 'the second run trained steps 5-6 only');
  assert.deepEqual(steps('straight'), [1, 2, 3, 4, 5, 6]);
  for (const f of ['model.safetensors', 'optimizer.safetensors']) {
    const a = fs.readFileSync(path.join(dump, 'straight', '3s', 'checkpoints', 'step-00000006', f));
    const b = fs.readFileSync(path.join(dump, 'resumed', '3s', 'checkpoints', 'step-00000006', f));
    assert.ok(a.equals(b), `${f}: byte-identical`);
  }
});
