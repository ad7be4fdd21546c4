/**
 * The recorded workflow histories of test/fixtures/histories/ (written by `npm run record-histories`,
 * replayed by test/unit/replay.test.ts): which fixtures exist, and the events that show each one
 * recorded what its name says. One home for both the recorder and the test.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { History } from '@temporalio/common/lib/proto-utils';
import * as proto from '@temporalio/proto';
import { patchProtobufRoot } from '@temporalio/proto/lib/patch-protobuf-root';
import { ROOT } from './helpers';

const { temporal } = proto;

export const HISTORIES_DIR = path.join(ROOT, 'test', 'fixtures', 'histories');

type Event = proto.temporal.api.history.v1.IHistoryEvent;
const T = temporal.api.enums.v1.EventType;

const ofType = (h: History, t: proto.temporal.api.enums.v1.EventType): Event[] =>
  (h.events ?? []).filter((e) => e.eventType === t);
const last = (h: History): Event | undefined => h.events?.[h.events.length - 1];
const signals = (h: History, name: string): number =>
  ofType(h, T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED).filter(
    (e) => e.workflowExecutionSignaledEventAttributes?.signalName === name,
  ).length;

/** trainShard scheduled events by event id. */
function trainShards(h: History): Map<string, Event> {
  const m = new Map<string, Event>();
  for (const e of ofType(h, T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED))
    if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'trainShard') m.set(String(e.eventId), e);
  return m;
}

const completed = (h: History): boolean => last(h)?.eventType === T.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED;

/**
 * Each fixture and what its history must show (checked by the recorder before it writes the file,
 * and by the replay test, so that a re-recording that missed its scenario fails).
 */
export const FIXTURES: { name: string; shows: string; check: (h: History) => boolean }[] = [
  {
    name: 'plain',
    shows: 'completed, several trainShard activities and shardProgress signals',
    check: (h) => completed(h) && trainShards(h).size >= 4 && signals(h, 'shardProgress') >= 1,
  },
  {
    name: 'pause-resume',
    shows: 'a pause signal that cancelled the running shard, a resume signal, then completed',
    check: (h) =>
      completed(h) &&
      signals(h, 'pause') === 1 &&
      signals(h, 'resume') === 1 &&
      ofType(h, T.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED).length >= 1 &&
      ofType(h, T.EVENT_TYPE_ACTIVITY_TASK_CANCELED).length >= 1,
  },
  {
    name: 'set-until',
    shows: 'an accepted and completed setUntil update (the rejected one leaves no event), then completed',
    check: (h) =>
      completed(h) &&
      ofType(h, T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED).some(
        (e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === 'setUntil',
      ) &&
      ofType(h, T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED).length === 1,
  },
  {
    name: 'continue-as-new',
    shows: 'the first run of a chain: it ends with ContinuedAsNew',
    check: (h) =>
      last(h)?.eventType === T.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW &&
      !h.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId,
  },
  {
    name: 'continue-as-new-last',
    shows: 'the last run of that chain: started with the carried state, then completed',
    check: (h) => completed(h) && !!h.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId,
  },
  {
    name: 'shard-retry',
    shows: 'a trainShard attempt that failed (its training child was killed) and a retry that completed',
    check: (h) => {
      const shards = trainShards(h);
      return (
        completed(h) &&
        ofType(h, T.EVENT_TYPE_ACTIVITY_TASK_STARTED).some(
          (e) =>
            shards.has(String(e.activityTaskStartedEventAttributes?.scheduledEventId)) &&
            (e.activityTaskStartedEventAttributes?.attempt ?? 1) >= 2 &&
            !!e.activityTaskStartedEventAttributes?.lastFailure,
        )
      );
    },
  },
];

export const fixtureFile = (name: string): string => path.join(HISTORIES_DIR, `${name}.json`);

/**
 * Proto3 JSON of a History, the format of the SDK's historyToJSON/historyFromJSON and of
 * `temporal workflow show --output json`. Done here with the protobufjs copy that @temporalio/proto
 * was built with: npm installs protobufjs 8 twice (under @temporalio/common and under
 * @temporalio/proto, as grpc holds the top level at 7), and the SDK's helpers in @temporalio/common
 * then throw "type must be a Type" on @temporalio/proto's types.
 */
interface ProtoJson {
  toJson(type: unknown, message: unknown): unknown;
  fromJson(type: unknown, json: unknown, opts: { ignoreUnknownFields: boolean }): History | null;
}
const protojson = (): ProtoJson =>
  require(
    require.resolve('protobufjs/ext/protojson', {
      paths: [path.dirname(require.resolve('@temporalio/proto/package.json'))],
    }),
  ) as ProtoJson;
const historyType = (): unknown =>
  (patchProtobufRoot(proto) as unknown as { lookupType(n: string): unknown }).lookupType(
    'temporal.api.history.v1.History',
  );

export function historyToJson(history: History): string {
  const message = temporal.api.history.v1.History.fromObject(history);
  return `${JSON.stringify(protojson().toJson(historyType(), message), null, 2)}\n`;
}

export function historyFromJson(json: string): History {
  const h = protojson().fromJson(historyType(), JSON.parse(json), { ignoreUnknownFields: true });
  if (!h) throw new TypeError('not a history');
  return h;
}

/** A fixture file as the History the SDK's replay takes. */
export function loadFixture(name: string): History {
  return historyFromJson(fs.readFileSync(fixtureFile(name), 'utf8'));
}

/**
 * Names of the fixture files present: `<scenario>` (the current recording) and
 * `<scenario>.<label>` (an older recording kept after a patched workflow change: it stands for the
 * jobs that were started on the old code and must still replay).
 */
export function fixtureNames(): string[] {
  return fs
    .readdirSync(HISTORIES_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

/** The scenario of a fixture name ("plain.before-x" -> the "plain" entry), or undefined if unknown. */
export const scenarioOf = (name: string): (typeof FIXTURES)[number] | undefined =>
  FIXTURES.find((f) => f.name === name.split('.')[0]);
