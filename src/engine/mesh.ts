/**
 * The devices an external engine runs on, and the checks that keep its mesh honest: the product
 * dp_replicate x dp_sharding x tp_sharding must be the processes it is started with (nodes x GPUs
 * per node), and its global batch must split over the data-parallel ranks.
 */
import type { StageConfig } from '../config/schema';
import type { ConfigProblem } from '../errors';
import type { CommandPreset } from './preset';
import type { LayoutSupport } from './registry';

export interface EngineDevices {
  /** {nodes}: launcher.nodes under Slurm; the local launcher runs on one node. */
  nodes: number;
  /** {gpus_per_node}: launcher.gpus_per_node, or the preset's when that is 0. */
  gpusPerNode: number;
}

export function engineDevices(c: StageConfig, preset: Pick<CommandPreset, 'gpus_per_node'>): EngineDevices {
  return {
    nodes: c.launcher.kind === 'slurm' ? c.launcher.nodes : 1,
    gpusPerNode: c.launcher.gpus_per_node > 0 ? c.launcher.gpus_per_node : preset.gpus_per_node,
  };
}

/** The mesh of an external engine must use exactly its nodes x GPUs per node; the local launcher has one node. */
export function externalMeshProblems(file: string, c: StageConfig, preset: CommandPreset): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (c.launcher.kind === 'local' && c.launcher.nodes > 1)
    problems.push({
      file,
      field: 'launcher.nodes',
      value: c.launcher.nodes,
      message: `the local launcher runs engine ${preset.name} on this worker's machine, one node`,
      fix: 'set launcher.kind = "slurm" to run on several nodes, or launcher.nodes = 1',
    });
  const p = c.parallelism;
  const mesh = p.dp_replicate * p.dp_sharding * p.tp_sharding;
  const d = engineDevices(c, preset);
  const devices = d.nodes * d.gpusPerNode;
  if (mesh !== devices) {
    const gpn =
      c.launcher.gpus_per_node > 0
        ? `launcher.gpus_per_node = ${d.gpusPerNode}`
        : `gpus_per_node = ${d.gpusPerNode} of preset ${preset.name} (launcher.gpus_per_node = 0)`;
    problems.push({
      file,
      field: 'parallelism.dp_replicate*dp_sharding*tp_sharding',
      value: `${p.dp_replicate}*${p.dp_sharding}*${p.tp_sharding} = ${mesh}`,
      message: `the device mesh has ${mesh} devices, but engine ${preset.name} runs on ${d.nodes} node${d.nodes === 1 ? '' : 's'} (${c.launcher.kind === 'slurm' ? 'launcher.nodes' : 'the local launcher'}) x ${d.gpusPerNode} (${gpn}) = ${devices}`,
      fix: `make them equal: a mesh whose product is ${devices}, or launcher.nodes x launcher.gpus_per_node = ${mesh}${c.launcher.kind === 'local' && mesh > d.gpusPerNode ? ' (with launcher.kind = "slurm" for more than one node)' : ''}`,
    });
  }
  return problems;
}

/** An external engine splits the global batch over its data-parallel ranks and accumulation steps. */
export function externalBatchProblems(file: string, c: StageConfig): ConfigProblem[] {
  const t = c.training;
  const p = c.parallelism;
  const dp = p.dp_replicate * p.dp_sharding;
  if (t.global_batch_size % (dp * t.grad_accum_steps) === 0) return [];
  return [
    {
      file,
      field: 'training.global_batch_size',
      value: t.global_batch_size,
      message: `not divisible by the data-parallel ranks (dp_replicate x dp_sharding = ${dp}) x training.grad_accum_steps (${t.grad_accum_steps}) of the external engine`,
      fix: `use a multiple of ${dp * t.grad_accum_steps}`,
    },
  ];
}

/** What this build needs to run a command preset: a reader of its layout, and a progress pattern where progress comes from its output. */
export function layoutProblems(
  preset: CommandPreset,
  support: Pick<LayoutSupport, 'progress' | 'defaultProgressPattern'>,
): ConfigProblem[] {
  if (support.progress !== 'output' || preset.progress_pattern || support.defaultProgressPattern) return [];
  return [
    {
      file: preset.file,
      field: 'progress_pattern',
      value: '',
      message: `engine ${preset.name} reports progress in its output lines (checkpoint_layout = "${preset.checkpoint_layout}"), and this build has no default pattern for them`,
      fix: 'set progress_pattern to a regular expression with the named groups step, loss and grad_norm',
    },
  ];
}
