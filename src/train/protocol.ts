/**
 * The line protocol between the trainShard activity (parent) and the training child process.
 * Child -> parent on stdout: one JSON object per line, tagged {"ttt": "..."}; other lines
 * (e.g. TensorFlow.js banners) are ignored. Parent -> child on stdin: "stop\n" asks the child
 * to checkpoint and return; end of stdin means the parent died, and the child exits at once.
 */
import type { CheckpointSaved, ShardProgress, ShardRequest, ShardResult } from './shard-types';

export type ChildMessage =
  | ({ ttt: 'progress' } & ShardProgress)
  | ({ ttt: 'checkpoint' } & CheckpointSaved)
  | { ttt: 'result'; result: ShardResult }
  /** The engine runner's trainer started: its pid, which is also its process group (src/engine/child.ts). */
  | { ttt: 'started'; pid: number }
  | { ttt: 'error'; message: string; userError: boolean; kind: string };

export type { ShardRequest };

export function encode(m: ChildMessage): string {
  return `${JSON.stringify(m)}\n`;
}

export function decode(line: string): ChildMessage | undefined {
  if (!line.startsWith('{"ttt":')) return undefined;
  try {
    return JSON.parse(line) as ChildMessage;
  } catch {
    return undefined;
  }
}
