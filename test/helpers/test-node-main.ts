/**
 * Runs one NodeODM-compatible test node from the command line, e.g. to put ClusterODM in front
 * of it by hand:
 *
 *   npm run test-node -- --port 3001 --max-images 50 --parallel 2 --processing-ms 5000 \
 *     --token x --asset-size 1048576 --fail
 *
 * SIGINT / SIGTERM close the node (and remove its temp dir) before exiting.
 */
import { parseArgs } from 'node:util';
import { startTestNode, type TestNode, type TestNodeOptions } from './test-node';

const USAGE = `Usage: npm run test-node -- [options]
  --host <addr>            interface to listen on (default 127.0.0.1)
  --port <n>               port (default 3001; 0 picks a free one)
  --token <t>              require ?token=<t> on API routes
  --max-images <n>         refuse tasks with more than n images
  --parallel <n>           max tasks running at once (default 1)
  --processing-ms <n>      simulated processing time per task (default 100)
  --asset-size <bytes>     size of the generated all.zip (default 1048576)
  --upload-delay-ms <n>    delay before answering each upload
  --info-delay-ms <n>      delay before answering /info
  --commit-delay-ms <n>    delay before answering a commit (the task is committed first)
  --drop-uploads <n>       destroy the next n upload requests mid-request
  --fail                   tasks end FAILED instead of COMPLETED
  NodeODM's own flags, as an autoscaled machine runs it:
  -q <n>                   max tasks running at once (as --parallel)
  --webhook <url>          POST the task info here when a task ends
  --s3_endpoint, --s3_bucket, --s3_access_key, --s3_secret_key, --s3_acl <v>, --s3_ignore_ssl
                           upload each completed task's all.zip to <bucket>/<uuid>/all.zip
  --help                   show this text`;

const NUMERIC_FLAGS = {
  port: 'port',
  'max-images': 'maxImages',
  parallel: 'maxParallelTasks',
  'processing-ms': 'processingMs',
  'asset-size': 'assetSize',
  'upload-delay-ms': 'uploadDelayMs',
  'info-delay-ms': 'infoDelayMs',
  'commit-delay-ms': 'commitDelayMs',
  'drop-uploads': 'dropUploads',
} as const satisfies Record<string, keyof TestNodeOptions>;

type NumericFlag = keyof typeof NUMERIC_FLAGS;

function parseCount(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new Error(`--${flag} expects a non-negative integer, got "${text}"`);
  return value;
}

/** Turns argv into test node options; throws with a readable message on bad input. */
export function parseTestNodeArgs(argv: string[]): Partial<TestNodeOptions> | 'help' {
  const text = { type: 'string' } as const;
  const { values } = parseArgs({
    args: argv,
    options: {
      host: text,
      token: text,
      port: text,
      'max-images': text,
      parallel: text,
      'processing-ms': text,
      'asset-size': text,
      'upload-delay-ms': text,
      'info-delay-ms': text,
      'commit-delay-ms': text,
      'drop-uploads': text,
      fail: { type: 'boolean' },
      help: { type: 'boolean' },
      q: { type: 'string', short: 'q' },
      webhook: text,
      s3_endpoint: text,
      s3_bucket: text,
      s3_access_key: text,
      s3_secret_key: text,
      s3_acl: text,
      s3_ignore_ssl: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help === true) return 'help';
  const opts: Partial<TestNodeOptions> = { port: 3001 };
  for (const flag of Object.keys(NUMERIC_FLAGS) as NumericFlag[]) {
    const given = values[flag];
    if (given !== undefined) opts[NUMERIC_FLAGS[flag]] = parseCount(flag, given);
  }
  if (values.host !== undefined) opts.host = values.host;
  if (values.token !== undefined) opts.token = values.token;
  if (values.fail === true) opts.failTasks = true;
  if (values.q !== undefined) opts.maxParallelTasks = parseCount('q', values.q);
  if (values.webhook !== undefined) opts.webhook = values.webhook;
  if (values.s3_endpoint !== undefined && values.s3_bucket !== undefined) {
    opts.s3 = {
      endpoint: values.s3_endpoint,
      bucket: values.s3_bucket,
      accessKey: values.s3_access_key ?? '',
      secretKey: values.s3_secret_key ?? '',
      acl: values.s3_acl ?? '',
    };
  }
  return opts;
}

function closeOnSignals(node: TestNode): void {
  let closing = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (closing) return;
    closing = true;
    console.log(`Received ${signal}, closing test node`);
    node.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

async function main(argv: string[]): Promise<void> {
  let opts: Partial<TestNodeOptions> | 'help';
  try {
    opts = parseTestNodeArgs(argv);
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    console.error(USAGE);
    process.exitCode = 1;
    return;
  }
  if (opts === 'help') {
    console.log(USAGE);
    return;
  }
  const node = await startTestNode(opts);
  closeOnSignals(node);
  console.log(`Test NodeODM node listening on ${node.port}`);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
