/**
 * Precomputed embeddings listed in JSONL files (TTT-Video-DiT's format): each line is
 * {"vid_emb": "<file>", "text_chunk_emb": ["<file>", ...]} with paths relative to
 * training.dataset_path and one text chunk per 3-second segment. vid_emb is the VAE posterior
 * [T, 2C, H, W] (mean then logvar) or an already-sampled latent [T, C, H, W]; a text chunk is
 * [L, text_dim]. Files are .safetensors or .npy. Every problem names the JSONL file and line.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StageConfig } from '../config/schema';
import { UserError } from '../errors';
import type { ModelDims } from '../model/dims';
import { normalSource, STREAM } from '../rng';
import type { DataSource } from './source';
import { readTensorFile } from './files';

interface Entry {
  file: string;
  line: number;
  vid: string;
  texts: string[];
}

function dataError(file: string, line: number, message: string, fix: string): UserError {
  return new UserError(message, { where: `${file}:${line}`, kind: 'DataError', fix });
}

/** Reads and checks every JSONL line (not the embedding files, which are read when used). */
export function readJsonlEntries(c: StageConfig, segments: number): Entry[] {
  const root = path.resolve(c.training.dataset_path);
  const entries: Entry[] = [];
  for (const j of c.training.jsonl_paths) {
    const file = path.resolve(root, j);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new UserError(`cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, {
        where: file,
        kind: 'DataError',
        fix: 'list JSONL files relative to training.dataset_path',
      });
    }
    text.split('\n').forEach((raw, i) => {
      const line = i + 1;
      if (!raw.trim()) return;
      let o: unknown;
      try {
        o = JSON.parse(raw);
      } catch {
        throw dataError(file, line, 'not valid JSON', 'write one JSON object per line');
      }
      const { vid_emb: vid, text_chunk_emb: texts } = (o ?? {}) as { vid_emb?: unknown; text_chunk_emb?: unknown };
      if (typeof vid !== 'string' || !Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) {
        throw dataError(
          file,
          line,
          'expected {"vid_emb": "<file>", "text_chunk_emb": ["<file>", ...]}',
          'give the video embedding file and one text embedding file per 3-second segment',
        );
      }
      if (texts.length !== segments) {
        throw dataError(
          file,
          line,
          `${texts.length} text chunks, but a ${c.model.video_length} video has ${segments} segments`,
          `list ${segments} text_chunk_emb files, one per 3-second segment`,
        );
      }
      entries.push({
        file,
        line,
        vid: path.resolve(root, vid),
        texts: (texts as string[]).map((t) => path.resolve(root, t)),
      });
    });
  }
  if (entries.length === 0)
    throw new UserError('the JSONL files list no samples', {
      where: 'training.jsonl_paths',
      kind: 'DataError',
      fix: 'add lines to the JSONL files',
    });
  return entries;
}

export function openJsonlDataset(c: StageConfig, d: ModelDims): DataSource {
  const entries = readJsonlEntries(c, d.segments);
  const { latentFrames: T, inChannels: C, latentHeight: H, latentWidth: W, textLength: L, textDim: E, segments: S } = d;
  const scale = c.training.vae_scale_factor;
  return {
    size: entries.length,
    sample(n: number) {
      const e = entries[n]!;
      const read = (f: string) => {
        try {
          return readTensorFile(f);
        } catch (err) {
          const msg = (err as Error).message;
          const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
          throw dataError(
            e.file,
            e.line,
            missing ? `${f} does not exist` : msg,
            missing ? 'fix the path (relative to training.dataset_path) or remove the line' : 'regenerate the file',
          );
        }
      };
      const v = read(e.vid);
      const s = v.shape;
      const posterior = s.length === 4 && s[1] === 2 * C;
      if (s.length !== 4 || s[0] !== T || (s[1] !== C && !posterior) || s[2] !== H || s[3] !== W) {
        throw dataError(
          e.file,
          e.line,
          `vid_emb ${e.vid} has shape [${s.join(', ')}], expected [${T}, ${C}, ${H}, ${W}] (a latent) or [${T}, ${2 * C}, ${H}, ${W}] (the VAE posterior) for ${c.model.video_length}`,
          "precompute the embeddings for this stage's video length and resolution",
        );
      }
      const video = new Float32Array(T * C * H * W);
      if (posterior) {
        // latent = (mean + exp(logvar/2) * eps) * scale, eps fixed per sample.
        const eps = normalSource(c.training.seed, STREAM.data, n, 0x9057);
        const plane = H * W;
        for (let t = 0; t < T; t++) {
          for (let ch = 0; ch < C; ch++) {
            for (let k = 0; k < plane; k++) {
              const mean = v.data[(t * 2 * C + ch) * plane + k]!;
              const logvar = v.data[(t * 2 * C + C + ch) * plane + k]!;
              const o = (t * C + ch) * plane + k;
              video[o] = (mean + Math.exp(logvar / 2) * Math.fround(eps())) * scale;
            }
          }
        }
      } else video.set(v.data);
      const text = new Float32Array(S * L * E);
      e.texts.forEach((f, i) => {
        const t = read(f);
        if (t.shape.length !== 2 || t.shape[0] !== L || t.shape[1] !== E) {
          throw dataError(
            e.file,
            e.line,
            `text chunk ${i} (${f}) has shape [${t.shape.join(', ')}], expected [${L}, ${E}] (model.text_length x model.text_embed_dim)`,
            'precompute the text embeddings with this text length',
          );
        }
        text.set(t.data, i * L * E);
      });
      return { video, text };
    },
  };
}
