import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestContext } from 'node:test';

/** A fresh temp directory, removed when the test ends. */
export function tempDir(t: TestContext, prefix = 'clusterodm-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => {
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    } catch {
      // A child process that is still stopping may write here; a leftover temp dir must not fail the test.
    }
  });
  return dir;
}
