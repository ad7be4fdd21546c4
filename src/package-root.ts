import * as path from 'node:path';

/** The package root (dist/src/.. /..), so that the shipped configs/ and scripts/ resolve from any working directory. */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');
