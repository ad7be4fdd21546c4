/** Where Temporal is: TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TTT_TASK_QUEUE, with local defaults. */

/** The task queue that workers poll and jobs are started on, unless TTT_TASK_QUEUE or a flag names another. */
export const DEFAULT_TASK_QUEUE = 'ttt-curriculum';

export interface TemporalTarget {
  address: string;
  namespace: string;
  taskQueue: string;
  /** True when the user pointed us at a server (TEMPORAL_ADDRESS): start nothing. */
  external: boolean;
}

export function temporalTarget(overrides: Partial<TemporalTarget> = {}): TemporalTarget {
  const envAddress = process.env.TEMPORAL_ADDRESS;
  return {
    address: overrides.address ?? envAddress ?? 'localhost:7233',
    namespace: overrides.namespace ?? process.env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: overrides.taskQueue ?? process.env.TTT_TASK_QUEUE ?? DEFAULT_TASK_QUEUE,
    external: overrides.external ?? (envAddress !== undefined && envAddress !== ''),
  };
}
