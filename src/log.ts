import pino from 'pino';

/**
 * The library's logger. JSON lines by default (one per event); readable output when stderr
 * is a terminal or TTT_LOG_PRETTY=1. Level from TTT_LOG_LEVEL (default "info").
 * Logs go to stderr so that stdout stays free for command output and the child's progress lines.
 */
function makeLogger(): pino.Logger {
  const level = process.env.TTT_LOG_LEVEL ?? 'info';
  const pretty = process.env.TTT_LOG_PRETTY === '1' || (process.env.TTT_LOG_PRETTY !== '0' && process.stderr.isTTY);
  if (pretty) {
    try {
      // pino-pretty is a dependency; synchronous stream so that lines are not lost at exit.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const pinoPretty = require('pino-pretty') as (o: object) => NodeJS.WritableStream;
      return pino(
        { level },
        pinoPretty({ destination: 2, sync: true, ignore: 'pid,hostname' }) as pino.DestinationStream,
      );
    } catch {
      /* fall through to JSON */
    }
  }
  return pino({ level }, pino.destination({ dest: 2, sync: true }));
}

export const logger: pino.Logger = makeLogger();
export type Logger = pino.Logger;
