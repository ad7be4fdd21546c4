/**
 * Deterministic synthetic latent videos and text embeddings with learnable structure.
 *
 * Sample n of seed s is a pure function of (s, n): each latent channel is a travelling wave
 * whose amplitude, spatial frequency and phase are the sample's "content", and whose speed
 * changes from one 3-second segment to the next. Each segment's text chunk is a fixed random
 * projection of that segment's parameters, so the text tells the model what the video does,
 * and a denoiser can learn to predict it: the loss falls.
 */
import { FRAMES_PER_SEGMENT } from '../shared/stages';
import { normals, rngFor, STREAM } from '../rng';

export interface SynthDims {
  latentFrames: number;
  segments: number;
  channels: number;
  height: number;
  width: number;
  textLength: number;
  textDim: number;
}

export interface SynthSample {
  /** [T, C, H, W] */
  video: Float32Array;
  /** [segments, L, textDim] */
  text: Float32Array;
}

const PARAMS = 6;

/** The parameters of sample n: per channel amplitude/frequency/phase, per segment speed. */
function sampleParams(
  seed: number,
  n: number,
  dims: SynthDims,
): { amp: number[]; fh: number[]; fw: number[]; phase: number[]; speed: number[] } {
  const r = rngFor(seed, STREAM.data, n);
  const amp: number[] = [];
  const fh: number[] = [];
  const fw: number[] = [];
  const phase: number[] = [];
  for (let c = 0; c < dims.channels; c++) {
    amp.push(0.6 + 0.8 * r());
    fh.push(0.3 + 1.2 * r());
    fw.push(0.3 + 1.2 * r());
    phase.push(2 * Math.PI * r());
  }
  const speed: number[] = [];
  for (let s = 0; s < dims.segments; s++) speed.push(-0.6 + 1.2 * r());
  return { amp, fh, fw, phase, speed };
}

export function synthSample(seed: number, n: number, dims: SynthDims): SynthSample {
  const { latentFrames: T, channels: C, height: H, width: W, segments: S, textLength: L, textDim: E } = dims;
  const p = sampleParams(seed, n, dims);
  const video = new Float32Array(T * C * H * W);
  // Time position of each frame: speeds integrate over frames; frame t belongs to segment min(floor(t/12), S-1).
  let pos = 0;
  for (let t = 0; t < T; t++) {
    const seg = Math.min(Math.floor(t / (FRAMES_PER_SEGMENT - 1)), S - 1);
    if (t > 0) pos += p.speed[seg]!;
    for (let c = 0; c < C; c++) {
      for (let h = 0; h < H; h++) {
        for (let w = 0; w < W; w++) {
          video[((t * C + c) * H + h) * W + w] = p.amp[c]! * Math.sin(p.fh[c]! * h + p.fw[c]! * w + pos + p.phase[c]!);
        }
      }
    }
  }
  // Text: a fixed random projection (depends on the seed only) of [mean amp, mean fh, mean fw, mean phase, speed, segment index].
  const proj = normals(L * E * PARAMS, seed, STREAM.data, 0x7e47);
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const text = new Float32Array(S * L * E);
  for (let s = 0; s < S; s++) {
    const feat = [
      mean(p.amp) - 1,
      mean(p.fh) - 0.9,
      mean(p.fw) - 0.9,
      Math.sin(mean(p.phase)),
      p.speed[s]! * 2,
      s / Math.max(1, S - 1) - 0.5,
    ];
    for (let i = 0; i < L * E; i++) {
      let acc = 0;
      for (let k = 0; k < PARAMS; k++) acc += proj[i * PARAMS + k]! * feat[k]!;
      text[s * L * E + i] = Math.tanh(acc);
    }
  }
  return { video, text };
}
