/** `server`: a local Temporal dev server in the foreground, its history in a SQLite file. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startDevServer } from '../../temporal/devserver';
import { type Register, toNumber } from '../common';

interface ServerFlags {
  port: number;
  uiPort: number;
  dbFilename: string;
}

async function server(o: ServerFlags): Promise<void> {
  fs.mkdirSync(path.dirname(path.resolve(o.dbFilename)), { recursive: true });
  const srv = await startDevServer({ port: o.port, uiPort: o.uiPort, dbFile: o.dbFilename });
  process.stdout.write(
    `Temporal dev server on ${srv.address}, UI http://localhost:${o.uiPort}, history in ${srv.dbFile}. Ctrl-C stops it.\n`,
  );
  await new Promise<void>((resolve) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve());
  });
  await srv.stop();
}

export const register: Register = (program) => {
  program
    .command('server')
    .description('run a local Temporal dev server in the foreground (history in .temporal/dev.sqlite)')
    .option('--port <n>', 'gRPC port', toNumber, 7233)
    .option('--ui-port <n>', 'web UI port', toNumber, 8233)
    .option('--db-filename <file>', 'SQLite file', path.join('.temporal', 'dev.sqlite'))
    .action(server);
};
