/**
 * The backend a numerics test file runs on. Test files that check the math (ttt.test.ts) run on
 * wasm, installed everywhere; their native-*.test.ts twins run the same tests on the tensorflow
 * backend when `npm run setup` installed it, and are skipped (saying why) when it did not, except
 * where TTT_REQUIRE_NATIVE=1 (CI): there a missing native backend fails them.
 */
import { type BackendChoice, NATIVE_PACKAGES } from '../src/backend';

let backendUnderTest: BackendChoice = 'wasm';

export function testBackend(): BackendChoice {
  return backendUnderTest;
}

export function useTestBackend(b: BackendChoice): void {
  backendUnderTest = b;
}

/** False when a native package is installed; else why native tests are skipped (throws where it is required). */
export function nativeSkip(): string | false {
  for (const p of NATIVE_PACKAGES) {
    try {
      require.resolve(p);
      return false;
    } catch {
      // not installed
    }
  }
  const why = 'the native tensorflow backend is not installed (npm run setup installs it; see its log line)';
  if (process.env.TTT_REQUIRE_NATIVE === '1') throw new Error(`TTT_REQUIRE_NATIVE=1 but ${why}`);
  return why;
}
