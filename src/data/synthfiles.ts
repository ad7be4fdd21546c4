/**
 * `ttt-curriculum dataset synth`: writes the synthetic source as a file dataset in exactly the
 * format the JSONL reader takes (latents as .npy, text chunks as .safetensors), so that demos
 * and tests exercise the real reader.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeSafetensors } from '../io/safetensors';
import type { StageConfig } from '../config/schema';
import type { ModelDims } from '../model/dims';
import { synthDims } from './batch';
import { writeNpy } from '../io/npy';
import { synthSample } from './synthetic';

export function writeSynthDataset(outDir: string, c: StageConfig, d: ModelDims, samples: number): string {
  const v = c.model.video_length;
  fs.mkdirSync(path.join(outDir, 'latents'), { recursive: true });
  fs.mkdirSync(path.join(outDir, 'text'), { recursive: true });
  const dims = synthDims(d);
  const lines: string[] = [];
  for (let n = 0; n < samples; n++) {
    const s = synthSample(c.training.seed, n, dims);
    const vid = `latents/${v}-${n}.npy`;
    writeNpy(path.join(outDir, vid), {
      shape: [d.latentFrames, d.inChannels, d.latentHeight, d.latentWidth],
      data: s.video,
    });
    const texts: string[] = [];
    for (let i = 0; i < d.segments; i++) {
      const rel = `text/${v}-${n}-${i}.safetensors`;
      const chunk = s.text.subarray(i * d.textLength * d.textDim, (i + 1) * d.textLength * d.textDim);
      fs.writeFileSync(
        path.join(outDir, rel),
        Buffer.concat(
          encodeSafetensors(
            new Map([['text_chunk_emb', { shape: [d.textLength, d.textDim], data: Float32Array.from(chunk) }]]),
          ),
        ),
      );
      texts.push(rel);
    }
    lines.push(JSON.stringify({ vid_emb: vid, text_chunk_emb: texts }));
  }
  const jsonl = path.join(outDir, `${v}.jsonl`);
  fs.writeFileSync(jsonl, `${lines.join('\n')}\n`);
  return jsonl;
}
