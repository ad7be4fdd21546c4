/** Starting and controlling jobs from code. */
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import {
  type ConnectionSummary,
  connectionSettings,
  openConnection,
  temporalTarget,
  type TemporalTarget,
} from './connection';
import { validateJobName } from '../jobname';
import type { CurriculumInput, CurriculumResult } from '../shared/types';
import { pauseSignal, progressQuery, resumeSignal, setUntilUpdate, WORKFLOW_TYPE } from '../../workflows/definitions';

/** How each client of connectClient connected (no secrets), for `status`. */
const summaries = new WeakMap<Client, ConnectionSummary>();

/**
 * A client connected the way Temporal's own tools connect: the profile file and TEMPORAL_*
 * variables (see connection.ts), with `opts.address` / `opts.namespace` winning over them.
 */
export async function connectClient(opts: Partial<TemporalTarget> = {}): Promise<Client> {
  const settings = connectionSettings(opts);
  const connection = await openConnection(settings, (o) => Connection.connect(o));
  const client = new Client({ connection, namespace: settings.namespace });
  summaries.set(client, settings.summary);
  return client;
}

/** Where and how a client of connectClient connected (TLS, client certificate, API key: yes or no); null for other clients. */
export function connectionOf(client: Client): ConnectionSummary | null {
  return summaries.get(client) ?? null;
}

/**
 * Starts a job, or attaches to it if a job of that name is running. A job that failed, was
 * cancelled or terminated starts a new run that resumes from its checkpoints.
 */
export async function startJob(
  client: Client,
  input: CurriculumInput,
  opts: { taskQueue?: string } = {},
): Promise<WorkflowHandle> {
  validateJobName(input.jobName);
  return client.workflow.start(WORKFLOW_TYPE, {
    taskQueue: opts.taskQueue ?? temporalTarget().taskQueue,
    workflowId: input.jobName,
    args: [input],
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
  });
}

export function jobHandle(client: Client, jobName: string): WorkflowHandle {
  return client.workflow.getHandle(validateJobName(jobName));
}

export async function runJob(
  client: Client,
  input: CurriculumInput,
  opts: { taskQueue?: string } = {},
): Promise<CurriculumResult> {
  const handle = await startJob(client, input, opts);
  return (await handle.result()) as CurriculumResult;
}

export { pauseSignal, progressQuery, resumeSignal, setUntilUpdate, WORKFLOW_TYPE };
