/**
 * Everything the autoscaler needs, on loopback: s3rver (a real S3-protocol server) with a bucket, a fake
 * DigitalOcean API, a fake docker-machine on PATH, an ASR config file, and a static test node.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import S3rver from 's3rver';
import { installFakeDockerMachine, type FakeDmConfig, type FakeDockerMachine } from './fake-docker-machine';
import { startFakeDigitalOcean, type FakeDigitalOcean } from './fake-digitalocean';

export const DO_TOKEN = 'do-token-5ecret-9f8e7d';
export const S3_KEY = 'AKIACLUSTERODMTEST';
export const S3_SECRET = 's3-secret-k3y-a1b2c3';
export const BUCKET = 'results';

export interface AsrRig {
  dir: string;
  s3Url: string;
  fakeDo: FakeDigitalOcean;
  dm: FakeDockerMachine;
  asrFile: string;
  /** Environment for a daemon that uses the fake docker-machine. */
  env: NodeJS.ProcessEnv;
  writeAsr(patch: Record<string, unknown>): void;
}

interface S3AccountModule {
  DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void };
}

export async function startAsrRig(
  t: TestContext,
  opts: { asr?: Record<string, unknown>; dm?: Partial<FakeDmConfig> } = {},
): Promise<AsrRig> {
  // One cleanup, in this order: test nodes on the fake machines, servers, then the folder.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clusterodm-asr-'));
  const cleanups: Array<() => unknown> = [];
  t.after(async () => {
    for (const fn of cleanups) await Promise.resolve(fn()).catch(() => undefined);
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    } catch {
      // A daemon that is still stopping may write here; a leftover temp dir must not fail the test.
    }
  });
  // s3rver knows one account; our keys are added to it so that they are distinctive in log scans.
  (require('s3rver/lib/models/account') as S3AccountModule).DUMMY_ACCOUNT.createKeyPair(S3_KEY, S3_SECRET);
  const s3 = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: path.join(dir, 's3'), configureBuckets: [{ name: BUCKET }] });
  const addr = await s3.run();
  cleanups.push(() => s3.close());
  const s3Url = `http://127.0.0.1:${addr.port}`;
  const fakeDo = await startFakeDigitalOcean({ token: DO_TOKEN });
  cleanups.push(() => fakeDo.close());
  const dm = installFakeDockerMachine(path.join(dir, 'dm'), { doApi: fakeDo.url, nodeArgs: ['--processing-ms', '300'], ...opts.dm });
  cleanups.unshift(() => dm.killAll());
  const asrFile = path.join(dir, 'asr.json');
  let current: Record<string, unknown> = {
    provider: 'digitalocean',
    accessToken: DO_TOKEN,
    s3: { accessKey: S3_KEY, secretKey: S3_SECRET, endpoint: s3Url, bucket: BUCKET },
    apiUrl: fakeDo.url,
    region: ['nyc3', 'sfo2'],
    createRetries: 3,
    ...opts.asr,
  };
  const writeAsr = (patch: Record<string, unknown>): void => {
    current = { ...current, ...patch };
    fs.writeFileSync(asrFile, JSON.stringify(current, null, 2));
  };
  writeAsr({});
  return { dir, s3Url, fakeDo, dm, asrFile, env: { ...process.env, PATH: dm.path }, writeAsr };
}
