/**
 * The folders that job inputs may reach. A workflow input comes from anyone who can start a
 * workflow on the namespace, so every path in it (the curriculum, `job.dump_folder`,
 * `training.dataset_path`, `checkpoint.init_state_dir`, ...) must resolve, with `..` and symbolic
 * links followed, to a place inside a root that the worker allows:
 *
 *   - `worker --allow-path DIR` (repeatable), else TTT_ALLOW_PATHS (DIR:DIR:...), else the worker's
 *     working directory: read and write;
 *   - the package's own configs/: read only, always.
 *
 * The most specific root that holds a path decides whether it may be written. Names are compared
 * byte for byte, as the file system does: "café" in NFC and in NFD are two different folders.
 * `ttt-curriculum train` takes no workflow input and confines nothing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, UserError } from './errors';
import { PACKAGE_ROOT } from './package-root';

/** The environment variable and the worker flag that name the roots (one home for both names). */
export const ALLOW_PATHS_ENV = 'TTT_ALLOW_PATHS';
export const ALLOW_PATH_FLAG = '--allow-path';

export type Access = 'read' | 'write';

export interface AllowedRoot {
  /** The root's real path (symbolic links resolved). */
  dir: string;
  writable: boolean;
}

export interface AllowedRoots {
  roots: readonly AllowedRoot[];
}

/** Where a path came from, for the error: the file (or "input.set", "input") and the field. */
export interface PathSource {
  file: string;
  field: string;
}

/** Symbolic links followed in one resolution before giving up (Linux's own limit is 40). */
const MAX_LINKS = 40;

/** Longest path that Linux opens (PATH_MAX, with its terminating NUL). */
const PATH_MAX = 4096;

/** Why a path cannot be resolved at all (not an answer about where it lies). */
class Unresolvable extends Error {}

function checkString(p: unknown): string {
  if (typeof p !== 'string' || p === '') throw new Unresolvable('is not a non-empty string');
  if (p.includes('\0')) throw new Unresolvable('contains a NUL character');
  return p;
}

/**
 * The real path of `abs` (absolute), following `..` and symbolic links like the kernel does, also
 * where the last components do not exist yet (a dump folder to be created): a missing component
 * is kept as it is, a dangling link is followed to its target.
 */
function realPath(abs: string, links = { n: 0 }): string {
  const bytes = Buffer.byteLength(abs);
  if (bytes >= PATH_MAX)
    throw new Unresolvable(`cannot be resolved (ENAMETOOLONG: ${bytes} bytes, the limit is ${PATH_MAX - 1})`);
  try {
    return fs.realpathSync.native(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new Unresolvable(`cannot be resolved (${code ?? String(e)})`);
  }
  const parent = path.dirname(abs);
  if (parent === abs) return abs;
  let link: string | undefined;
  try {
    if (fs.lstatSync(abs).isSymbolicLink()) link = fs.readlinkSync(abs);
  } catch {
    /* missing: kept as a plain name below */
  }
  const realParent = realPath(parent, links);
  if (link === undefined) return path.join(realParent, path.basename(abs));
  if (++links.n > MAX_LINKS) throw new Unresolvable('cannot be resolved (too many levels of symbolic links)');
  return realPath(path.resolve(realParent, link), links);
}

/** Whether `p` is `root` or lies below it (both real, absolute paths). */
export function isWithin(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!path.isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${path.sep}`));
}

/** A root from a flag or the environment: it must be an existing folder. */
function root(dir: string, writable: boolean, from: string): AllowedRoot {
  let real: string;
  try {
    real = realPath(path.resolve(checkString(dir)));
  } catch (e) {
    if (!(e instanceof Unresolvable)) throw e;
    throw new UserError(`${JSON.stringify(dir)} ${e.message}`, {
      where: from,
      kind: 'InvalidInput',
      fix: `name an existing folder: ${ALLOW_PATH_FLAG} /data/runs (repeatable) or ${ALLOW_PATHS_ENV}=/data/runs:/data/datasets`,
    });
  }
  if (!fs.existsSync(real) || !fs.statSync(real).isDirectory())
    throw new UserError(`${JSON.stringify(dir)} is not an existing folder (${real})`, {
      where: from,
      kind: 'InvalidInput',
      fix: `create it first, or name another folder with ${ALLOW_PATH_FLAG} or ${ALLOW_PATHS_ENV}`,
    });
  return { dir: real, writable };
}

/**
 * The roots of a worker: `allowPaths` (the --allow-path flags) when given, else the folders in
 * TTT_ALLOW_PATHS (separated by ":"), else `cwd`; all read-write. The package's configs/ is
 * always added read-only.
 */
export function allowedRoots(
  opts: { allowPaths?: readonly string[]; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): AllowedRoots {
  const env = opts.env ?? process.env;
  const fromEnv = env[ALLOW_PATHS_ENV];
  let named: { dir: string; from: string }[];
  if (opts.allowPaths && opts.allowPaths.length > 0)
    named = opts.allowPaths.map((dir) => ({ dir, from: ALLOW_PATH_FLAG }));
  else if (fromEnv !== undefined && fromEnv.trim() !== '')
    named = fromEnv
      .split(path.delimiter)
      .filter((d) => d !== '')
      .map((dir) => ({ dir, from: ALLOW_PATHS_ENV }));
  else named = [{ dir: opts.cwd ?? process.cwd(), from: 'the working directory' }];
  const roots = named.map((n) => root(n.dir, true, n.from));
  const configs = path.join(PACKAGE_ROOT, 'configs');
  if (fs.existsSync(configs)) roots.push({ dir: fs.realpathSync.native(configs), writable: false });
  return { roots };
}

/** "/data/runs (read-write), /pkg/configs (read-only)": for errors and the worker's start line. */
export function describeRoots(allowed: AllowedRoots): string {
  return allowed.roots.map((r) => `${r.dir} (${r.writable ? 'read-write' : 'read-only'})`).join(', ');
}

/** The most specific root holding `real`, if any. */
function rootOf(allowed: AllowedRoots, real: string): AllowedRoot | undefined {
  let best: AllowedRoot | undefined;
  for (const r of allowed.roots) if (isWithin(r.dir, real) && (!best || r.dir.length > best.dir.length)) best = r;
  return best;
}

/**
 * Resolves `p` (relative paths against `base`, default the working directory), following `..` and
 * symbolic links, and checks that a root allows `access` there. Returns the real path; throws a
 * ConfigError that names the field, the path and the flag that would allow it.
 */
export function confinePath(
  allowed: AllowedRoots,
  p: unknown,
  access: Access,
  source: PathSource,
  base = process.cwd(),
): string {
  const problem = (message: string, fix: string): ConfigError =>
    new ConfigError([{ file: source.file, field: source.field, value: p, message, fix }]);
  let real: string;
  try {
    real = realPath(path.resolve(base, checkString(p)));
  } catch (e) {
    if (!(e instanceof Unresolvable)) throw e;
    throw problem(`the path ${e.message}`, 'give a path to a folder or file inside the folders this worker allows');
  }
  const r = rootOf(allowed, real);
  const allow = `start the worker with ${ALLOW_PATH_FLAG} <folder> (repeatable) or ${ALLOW_PATHS_ENV}=<folder>:<folder> naming a folder that holds it`;
  if (!r)
    throw problem(
      `resolves to ${real}, outside the folders this worker lets job inputs ${access} (${describeRoots(allowed)})`,
      `use a path inside one of them, or ${allow}`,
    );
  if (access === 'write' && !r.writable)
    throw problem(
      `resolves to ${real}, inside ${r.dir}, which job inputs may only read`,
      `write elsewhere (e.g. a dump folder under a read-write root), or ${allow}`,
    );
  return real;
}
