/** Starting and controlling jobs from code. */
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { temporalTarget, type TemporalTarget } from './connection';
import { validateJobName } from '../jobname';
import type { CurriculumInput, CurriculumResult } from '../shared/types';
import { pauseSignal, progressQuery, resumeSignal, setUntilUpdate, WORKFLOW_TYPE } from '../../workflows/definitions';

export async function connectClient(opts: Partial<TemporalTarget> = {}): Promise<Client> {
  const target = temporalTarget(opts);
  const connection = await Connection.connect({ address: target.address });
  return new Client({ connection, namespace: target.namespace });
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
