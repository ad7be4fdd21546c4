/**
 * A CogVideoX transformer in Hugging Face diffusers format: config.json plus
 * diffusion_pytorch_model.safetensors, or shards listed in
 * diffusion_pytorch_model.safetensors.index.json. Reading it here means reading config.json and
 * the safetensors headers only, and checking everything the conversion relies on, so that a bad
 * folder fails before anything is written, with every problem listed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { paramDims } from '../model/dims';
import { paramSpecs } from '../model/params';
import { readHeader, SafetensorsError, type SafetensorsHeader, type TensorInfo } from '../io/safetensors';
import {
  ConvertError,
  DIFFUSERS_CONFIG,
  DIFFUSERS_INDEX,
  DIFFUSERS_SINGLE,
  readDiffusersConfig,
  type DiffusersConfig,
} from './config';
import { splitSpecs, tttName } from './keymap';
import { type IndexProblem, readSafetensorsIndex } from '../io/files';

export {
  ConvertError,
  DIFFUSERS_CONFIG,
  DIFFUSERS_INDEX,
  DIFFUSERS_SINGLE,
  isDiffusersFolder,
  readDiffusersConfig,
  type DiffusersConfig,
} from './config';
export { paramDims } from '../model/dims';
export const SOURCE_DTYPES = ['BF16', 'F16', 'F32'];

export interface SourceTensor {
  /** diffusers name. */
  name: string;
  file: string;
  info: TensorInfo;
}

export interface SourceFile {
  file: string;
  bytes: number;
  header: SafetensorsHeader;
  /** Its tensors in the order of their bytes in the file. */
  tensors: SourceTensor[];
}

export interface DiffusersSource {
  dir: string;
  config: DiffusersConfig;
  /** Every input file in a stable order: config.json, the index (if any), the safetensors files. */
  inputFiles: string[];
  /** The safetensors files, sorted by name. */
  files: SourceFile[];
  tensors: Map<string, SourceTensor>;
}

const INDEX_FIXES: Record<IndexProblem['cause'], string> = {
  unreadable: 'restore the index file from the diffusers checkpoint',
  malformed: 'restore the index file from the diffusers checkpoint',
  outside: 'shard files must sit next to the index',
  missing: 'download the missing shards, or restore the folder',
};

function shardFiles(dir: string): { files: string[]; index: string | null; weightMap: Record<string, string> | null } {
  const index = path.join(dir, DIFFUSERS_INDEX);
  if (fs.existsSync(index)) {
    const r = readSafetensorsIndex(index);
    if ('problem' in r) throw new ConvertError(index, r.problem, INDEX_FIXES[r.cause]);
    return { files: r.files, index, weightMap: r.weightMap };
  }
  const single = path.join(dir, DIFFUSERS_SINGLE);
  if (fs.existsSync(single)) return { files: [single], index: null, weightMap: null };
  throw new ConvertError(
    dir,
    `no ${DIFFUSERS_SINGLE} or ${DIFFUSERS_INDEX}`,
    'point it at the `transformer` folder of a CogVideoX diffusers checkpoint',
  );
}

const list = (xs: string[], n = 20): string =>
  xs.length <= n ? xs.join(', ') : `${xs.slice(0, n).join(', ')} and ${xs.length - n} more`;

/**
 * Reads a diffusers folder's config and headers and checks them against the TTT-Video-DiT
 * parameter set: every source tensor must map to a parameter (unknown keys are listed), every
 * mapped parameter must have a source (missing keys are listed), with the same shape, in BF16,
 * F16 or F32. Throws one ConvertError listing every problem.
 */
export function readDiffusersSource(dirArg: string, ssmLayer: 'ttt_mlp' | 'ttt_linear'): DiffusersSource {
  const dir = path.resolve(dirArg);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory())
    throw new ConvertError(
      dir,
      'no such directory',
      'point it at the `transformer` folder of a CogVideoX diffusers checkpoint',
    );
  const config = readDiffusersConfig(dir);
  const { files: paths, index, weightMap } = shardFiles(dir);
  const files: SourceFile[] = [];
  const tensors = new Map<string, SourceTensor>();
  const problems: string[] = [];
  for (const file of paths) {
    let header: SafetensorsHeader;
    try {
      header = readHeader(file);
    } catch (e) {
      if (e instanceof SafetensorsError)
        throw new ConvertError(file, e.problem, 'the file is malformed or truncated; download it again');
      throw e;
    }
    const ts: SourceTensor[] = [];
    for (const [name, info] of header.tensors) {
      const t = { name, file, info };
      const other = tensors.get(name);
      if (other) problems.push(`${name} is in both ${path.basename(other.file)} and ${path.basename(file)}`);
      else tensors.set(name, t);
      ts.push(t);
    }
    ts.sort((a, b) => a.info.begin - b.info.begin || a.info.end - b.info.end);
    files.push({ file, bytes: header.dataStart + header.dataBytes, header, tensors: ts });
  }
  if (weightMap) {
    const wrong = Object.entries(weightMap)
      .filter(([name, f]) => tensors.get(name)?.file !== path.join(dir, f))
      .map(([name, f]) => `${name} (index: ${f})`);
    if (wrong.length > 0)
      problems.push(`${DIFFUSERS_INDEX} lists tensors that are not in the file it names: ${list(wrong)}`);
    const unlisted = [...tensors.keys()].filter((n) => !(n in weightMap));
    if (unlisted.length > 0) problems.push(`tensors missing from ${DIFFUSERS_INDEX}: ${list(unlisted)}`);
  }
  const specs = paramSpecs(paramDims(config, ssmLayer));
  const { mapped } = splitSpecs(specs);
  const wanted = new Map(mapped.map((m) => [m.source, m.spec]));
  const unknown = [...tensors.keys()].filter((n) => !wanted.has(n)).sort();
  if (unknown.length > 0) {
    const outOfRange = unknown.filter((n) => tttName(n) !== undefined);
    problems.push(
      `unknown tensors (no TTT-Video-DiT parameter of a ${config.num_layers}-layer model takes them): ${list(unknown)}` +
        (outOfRange.length > 0
          ? ` (${outOfRange.length} of them are blocks past num_layers = ${config.num_layers})`
          : ''),
    );
  }
  const missing = [...wanted.keys()].filter((n) => !tensors.has(n));
  if (missing.length > 0) problems.push(`missing tensors: ${list(missing)}`);
  const badShape: string[] = [];
  const badDtype: string[] = [];
  for (const [name, spec] of wanted) {
    const t = tensors.get(name);
    if (!t) continue;
    if (JSON.stringify(t.info.shape) !== JSON.stringify(spec.torchShape))
      badShape.push(`${name} is ${JSON.stringify(t.info.shape)}, expected ${JSON.stringify(spec.torchShape)}`);
    if (!SOURCE_DTYPES.includes(t.info.dtype)) badDtype.push(`${name} (${t.info.dtype})`);
  }
  if (badShape.length > 0) problems.push(`shapes that disagree with config.json: ${list(badShape)}`);
  if (badDtype.length > 0) problems.push(`dtypes other than ${SOURCE_DTYPES.join(', ')}: ${list(badDtype)}`);
  if (problems.length > 0) {
    throw new ConvertError(
      dir,
      `not a CogVideoX transformer this converter can map:\n  - ${problems.join('\n  - ')}\n`,
      'use the `transformer` folder of an unmodified CogVideoX-5B diffusers checkpoint whose config.json matches its tensors',
    );
  }
  return {
    dir,
    config,
    inputFiles: [path.join(dir, DIFFUSERS_CONFIG), ...(index ? [index] : []), ...paths],
    files,
    tensors,
  };
}
