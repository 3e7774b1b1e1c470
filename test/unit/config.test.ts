import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { OPTION_NAMES, parseConfig, type Config } from '../../src/config';
import { ClusterError } from '../../src/core';

/** The shipped config-default.json (compiled tests live in dist/test/unit). */
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const SHIPPED_DEFAULTS = path.join(REPO_ROOT, 'config-default.json');

function tempDir(t: TestContext, label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `clusterodm-config-${label}-`));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A working directory and a program folder holding a copy of the shipped defaults. */
function setup(t: TestContext): { cwd: string; appRoot: string } {
  const appRoot = tempDir(t, 'app');
  fs.copyFileSync(SHIPPED_DEFAULTS, path.join(appRoot, 'config-default.json'));
  return { cwd: tempDir(t, 'cwd'), appRoot };
}

function writeJson(dir: string, name: string, value: unknown): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value));
  return file;
}

function configOf(argv: string[], where: { cwd: string; appRoot: string }): Config {
  const result = parseConfig({ argv, ...where });
  assert.equal(result.kind, 'config');
  if (result.kind !== 'config') throw new Error('unreachable');
  return result.config;
}

function assertConfigError(fn: () => unknown, expected: string | RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ClusterError, `expected a ClusterError, got ${String(e)}`);
    assert.equal(e.code, 'CONFIG_INVALID');
    if (typeof expected === 'string') assert.equal(e.message, expected);
    else assert.match(e.message, expected);
    return true;
  });
}

test('the shipped config-default.json gives the original defaults', (t) => {
  const cwd = tempDir(t, 'cwd');
  const config = configOf([], { cwd, appRoot: REPO_ROOT });
  assert.deepEqual(config, {
    port: 3000,
    securePort: 0,
    adminCliPort: 8080,
    adminWebPort: 10000,
    adminPass: '',
    adminWebHosts: [],
    logLevel: 'info',
    cloudProvider: 'local',
    uploadMaxSpeed: 0,
    downloadsFromS3: '',
    splitmerge: true,
    publicAddress: '',
    floodLimit: 0,
    staleUploadsTimeout: 0,
    waitForNode: 1800,
    queueMax: 100,
    token: '',
    debug: false,
    sslKey: '',
    sslCert: '',
    asr: '',
    clusterAddress: '',
    dataDir: path.join(cwd, 'data'),
    tmpDir: path.join(cwd, 'tmp'),
    logDir: REPO_ROOT,
    maxOpenUploads: 1000,
    maxOpenUploadsPerAddress: 100,
    configFile: null,
    useSsl: false,
  });
});

test('config-default.json holds exactly the known options', () => {
  const keys: unknown = JSON.parse(fs.readFileSync(SHIPPED_DEFAULTS, 'utf8'));
  assert.ok(typeof keys === 'object' && keys !== null);
  assert.deepEqual(Object.keys(keys).sort(), [...OPTION_NAMES].sort());
});

test('the returned config is frozen', (t) => {
  const result = parseConfig({ argv: [], ...setup(t) });
  assert.ok(Object.isFrozen(result));
  assert.equal(result.kind, 'config');
  if (result.kind !== 'config') return;
  assert.ok(Object.isFrozen(result.config));
  assert.throws(() => {
    (result.config as { port: number }).port = 1;
  }, TypeError);
});

test('aliases -p and -c, and the long forms', (t) => {
  const where = setup(t);
  assert.equal(configOf(['-p', '4000'], where).port, 4000);
  assert.equal(configOf(['-p4001'], where).port, 4001);
  assert.equal(configOf(['--port=4002'], where).port, 4002);
  assert.equal(configOf(['-c', 'lightning'], where).cloudProvider, 'lightning');
  assert.equal(configOf(['--cloud-provider', 'lightningDev'], where).cloudProvider, 'lightningDev');
});

test('every flag reaches its field', (t) => {
  const where = setup(t);
  const config = configOf(
    [
      '--secure-port', '3443', '--admin-cli-port', '0', '--admin-web-port', '0', '--admin-pass', '0123',
      '--log-level', 'debug', '--upload-max-speed', '1000', '--downloads-from-s3', 'https://s3.example.com',
      '--public-address', 'https://cluster.example.com', '--flood-limit', '5', '--stale-uploads-timeout', '24',
      '--token', 'secret', '--debug', '--ssl-key', 'k.pem', '--ssl-cert', 'c.pem', '--asr', 'asr.json',
      '--cluster-address', 'http://old:3000', '--log-dir', 'logs', '--max-open-uploads', '50',
      '--max-open-uploads-per-address', '0',
    ],
    where,
  );
  assert.equal(config.securePort, 3443);
  assert.equal(config.adminCliPort, 0);
  assert.equal(config.adminWebPort, 0);
  assert.equal(config.adminPass, '0123', 'strings are never turned into numbers');
  assert.equal(config.logLevel, 'debug');
  assert.equal(config.uploadMaxSpeed, 1000);
  assert.equal(config.downloadsFromS3, 'https://s3.example.com');
  assert.equal(config.publicAddress, 'https://cluster.example.com');
  assert.equal(config.floodLimit, 5);
  assert.equal(config.staleUploadsTimeout, 24);
  assert.equal(config.token, 'secret');
  assert.equal(config.debug, true);
  assert.equal(config.sslKey, 'k.pem');
  assert.equal(config.sslCert, 'c.pem');
  assert.equal(config.useSsl, true);
  assert.equal(config.asr, 'asr.json');
  assert.equal(config.clusterAddress, 'http://old:3000');
  assert.equal(config.logDir, path.join(where.cwd, 'logs'));
  assert.equal(config.maxOpenUploads, 50);
  assert.equal(config.maxOpenUploadsPerAddress, 0);
});

test('SSL is on only when both the key and the certificate are set', (t) => {
  const where = setup(t);
  assert.equal(configOf(['--ssl-key', 'k.pem'], where).useSsl, false);
  assert.equal(configOf(['--ssl-cert', 'c.pem'], where).useSsl, false);
  assert.equal(configOf(['--ssl-key', 'k.pem', '--ssl-cert', 'c.pem'], where).useSsl, true);
});

test('booleans: --no-splitmerge, and "false" means false', (t) => {
  const where = setup(t);
  assert.equal(configOf(['--no-splitmerge'], where).splitmerge, false);
  assert.equal(configOf(['--splitmerge=false'], where).splitmerge, false);
  assert.equal(configOf(['--splitmerge', 'no'], where).splitmerge, false);
  assert.equal(configOf(['--debug'], where).debug, true);
  assert.equal(configOf(['--debug', 'false'], where).debug, false);
  assert.equal(configOf(['--debug=0'], where).debug, false);
  assert.equal(configOf(['--debug', 'yes'], where).debug, true);
  const file = writeJson(where.cwd, 'bools.json', { splitmerge: 'false', debug: 'true' });
  const fromFile = configOf(['--config', file], where);
  assert.equal(fromFile.splitmerge, false, 'the original read the string "false" as true');
  assert.equal(fromFile.debug, true);
  const numeric = writeJson(where.cwd, 'numeric.json', { splitmerge: 0, debug: '1' });
  assert.equal(configOf(['--config', numeric], where).splitmerge, false);
  assert.equal(configOf(['--config', numeric], where).debug, true);
});

test('precedence: command line > config file > defaults', (t) => {
  const where = setup(t);
  const file = writeJson(where.cwd, 'my.json', { port: 4000, token: 'from-file', 'flood-limit': '3' });
  const config = configOf(['--config', file, '-p', '5000'], where);
  assert.equal(config.port, 5000, 'the command line beats the file (the original did the reverse)');
  assert.equal(config.token, 'from-file', 'the file beats the defaults');
  assert.equal(config.floodLimit, 3, 'numeric strings are accepted in files');
  assert.equal(config.adminCliPort, 8080, 'untouched keys keep their defaults');
  assert.equal(config.configFile, file);
});

test('a repeated flag: the last one wins', (t) => {
  assert.equal(configOf(['-p', '4000', '--port', '4001'], setup(t)).port, 4001);
});

test('every key works from a config file, including public-address', (t) => {
  const where = setup(t);
  const file = writeJson(where.cwd, 'all.json', {
    'public-address': 'https://public.example.com',
    'secure-port': 3443,
    'cloud-provider': 'lightning',
    'log-level': 'warn',
    'cluster-address': 'http://unused',
    'data-dir': 'state',
    'tmp-dir': '/var/tmp/odm',
    'log-dir': '/var/log/odm',
    'max-open-uploads': 20,
    'max-open-uploads-per-address': '5',
  });
  const config = configOf(['--config', file], where);
  assert.equal(config.publicAddress, 'https://public.example.com');
  assert.equal(config.securePort, 3443);
  assert.equal(config.cloudProvider, 'lightning');
  assert.equal(config.logLevel, 'warn');
  assert.equal(config.clusterAddress, 'http://unused');
  assert.equal(config.dataDir, path.join(where.cwd, 'state'));
  assert.equal(config.tmpDir, '/var/tmp/odm');
  assert.equal(config.logDir, '/var/log/odm');
  assert.equal(config.maxOpenUploads, 20);
  assert.equal(config.maxOpenUploadsPerAddress, 5);
});

test('--config and the data and tmp dirs resolve against the working directory', (t) => {
  const where = setup(t);
  fs.mkdirSync(path.join(where.cwd, 'conf'));
  writeJson(path.join(where.cwd, 'conf'), 'c.json', { 'data-dir': 'd1' });
  const config = configOf(['--config', 'conf/c.json', '--tmp-dir', 'scratch/t'], where);
  assert.equal(config.configFile, path.join(where.cwd, 'conf', 'c.json'));
  assert.equal(config.dataDir, path.join(where.cwd, 'd1'), 'relative to the cwd, not to the config file');
  assert.equal(config.tmpDir, path.join(where.cwd, 'scratch', 't'));
  assert.equal(configOf(['--data-dir', '/srv/data'], where).dataDir, '/srv/data');
});

test('config-default.json is read from the program folder, not the cwd', (t) => {
  const where = setup(t);
  writeJson(where.cwd, 'config-default.json', '{ not json');
  assert.equal(configOf([], where).port, 3000);
});

test('type errors name the flag or key and the bad value', (t) => {
  const where = setup(t);
  const cases: Array<[string[], string]> = [
    [['--port', 'abc'], 'Invalid value for --port: "abc" (expected a whole number)'],
    [['--port'], 'Invalid value for --port: "" (expected a whole number)'],
    [['--port', '70000'], 'Invalid value for --port: "70000" (expected a port number from 0 to 65535)'],
    [['--port=-1'], 'Invalid value for --port: "-1" (expected a whole number)'],
    [['--secure-port', '1e3'], 'Invalid value for --secure-port: "1e3" (expected a whole number)'],
    [['--admin-cli-port', '80.5'], 'Invalid value for --admin-cli-port: "80.5" (expected a whole number)'],
    [['--admin-web-port', 'x'], 'Invalid value for --admin-web-port: "x" (expected a whole number)'],
    [['--upload-max-speed', 'fast'], 'Invalid value for --upload-max-speed: "fast" (expected a whole number)'],
    [['--flood-limit', '1.5'], 'Invalid value for --flood-limit: "1.5" (expected a whole number)'],
    [['--stale-uploads-timeout', '-'], 'Invalid value for --stale-uploads-timeout: "-" (expected a whole number)'],
    [['--no-port'], 'Invalid value for --port: false (expected a whole number)'],
    [['--debug', 'maybe'], 'Invalid value for --debug: "maybe" (expected true or false)'],
    [['--splitmerge=2'], 'Invalid value for --splitmerge: 2 (expected true or false)'],
    [['--log-level', 'loud'], 'Invalid value for --log-level: "loud" (expected one of error, warn, info, verbose, debug, silly)'],
    [['-c', 'aws'], 'Invalid value for --cloud-provider: "aws" (expected one of local, lightning, lightningDev)'],
    [['--data-dir', ''], 'Invalid value for --data-dir: "" (expected a non-empty path)'],
    [['--no-token'], 'Invalid value for --token: false (expected a string (put the value in quotes))'],
    [['--config'], 'Invalid value for --config: "" (expected the path of a JSON file)'],
  ];
  for (const [argv, message] of cases) assertConfigError(() => parseConfig({ argv, ...where }), message);
});

test('type errors in a config file name the file', (t) => {
  const where = setup(t);
  const cases: Array<[Record<string, unknown>, string, string]> = [
    [{ port: 'abc' }, 'port', '"abc" (expected a whole number)'],
    [{ port: 3000.5 }, 'port', '3000.5 (expected a whole number)'],
    [{ port: 65536 }, 'port', '65536 (expected a port number from 0 to 65535)'],
    [{ 'flood-limit': -1 }, 'flood-limit', '-1 (expected a whole number)'],
    [{ token: 12345 }, 'token', '12345 (expected a string (put the value in quotes))'],
    [{ 'ssl-key': false }, 'ssl-key', 'false (expected a string (put the value in quotes))'],
    [{ 'public-address': null }, 'public-address', 'null (expected a string (put the value in quotes))'],
    [{ splitmerge: 'nope' }, 'splitmerge', '"nope" (expected true or false)'],
    [{ 'log-level': 'trace' }, 'log-level', '"trace" (expected one of error, warn, info, verbose, debug, silly)'],
    [{ 'cloud-provider': 'Local' }, 'cloud-provider', '"Local" (expected one of local, lightning, lightningDev)'],
    [{ 'tmp-dir': '' }, 'tmp-dir', '"" (expected a non-empty path)'],
  ];
  for (const [content, key, detail] of cases) {
    const file = writeJson(where.cwd, 'bad.json', content);
    assertConfigError(() => parseConfig({ argv: ['--config', file], ...where }), `Invalid value for "${key}" in ${file}: ${detail}`);
  }
});

test('unknown options and keys stop the start', (t) => {
  const where = setup(t);
  assertConfigError(() => parseConfig({ argv: ['--foo-bar'], ...where }), 'Unknown option: --foo-bar');
  assertConfigError(() => parseConfig({ argv: ['--foo-bar', 'x'], ...where }), 'Unknown option: --foo-bar');
  assertConfigError(() => parseConfig({ argv: ['-x'], ...where }), 'Unknown option: -x');
  assertConfigError(() => parseConfig({ argv: ['--port', '3000', '3001'], ...where }), 'Unexpected argument: 3001');
  const file = writeJson(where.cwd, 'unknown.json', { port: 3000, 'foo-bar': 1 });
  assertConfigError(() => parseConfig({ argv: ['--config', file], ...where }), `Unknown key in ${file}: foo-bar`);
  const camel = writeJson(where.cwd, 'camel.json', { publicAddress: 'http://x' });
  assertConfigError(() => parseConfig({ argv: ['--config', camel], ...where }), `Unknown key in ${camel}: publicAddress`);
});

test('--config can only come from the command line', (t) => {
  const where = setup(t);
  const other = writeJson(where.cwd, 'other.json', { port: 4000 });
  const file = writeJson(where.cwd, 'nested.json', { config: other });
  assertConfigError(
    () => parseConfig({ argv: ['--config', file], ...where }),
    `Unknown key in ${file}: config (--config can only be given on the command line)`,
  );
});

test('a config file that is missing, unparsable or not an object is a clear error', (t) => {
  const where = setup(t);
  const missing = path.join(where.cwd, 'missing.json');
  assertConfigError(
    () => parseConfig({ argv: ['--config', 'missing.json'], ...where }),
    new RegExp(`^Cannot use config file ${escape(missing)}: ENOENT`),
  );
  const broken = writeJson(where.cwd, 'broken.json', '{ "port": 3000,');
  assertConfigError(
    () => parseConfig({ argv: ['--config', broken], ...where }),
    new RegExp(`^Cannot use config file ${escape(broken)}: not valid JSON \\(`),
  );
  const array = writeJson(where.cwd, 'array.json', [1, 2]);
  assertConfigError(
    () => parseConfig({ argv: ['--config', array], ...where }),
    `Cannot use config file ${array}: expected a JSON object, found an array`,
  );
  const scalar = writeJson(where.cwd, 'scalar.json', '3000');
  assertConfigError(
    () => parseConfig({ argv: ['--config', scalar], ...where }),
    `Cannot use config file ${scalar}: expected a JSON object, found a number`,
  );
  assertConfigError(
    () => parseConfig({ argv: ['--config', where.cwd], ...where }),
    new RegExp(`^Cannot use config file ${escape(where.cwd)}: EISDIR`),
  );
});

test('config-default.json missing or invalid', (t) => {
  const cwd = tempDir(t, 'cwd');
  const appRoot = tempDir(t, 'app');
  const prefix = 'config-default.json not found or invalid: ';
  assertConfigError(() => parseConfig({ argv: [], cwd, appRoot }), new RegExp(`^${prefix}ENOENT`));
  // --help needs the defaults too, as in the original.
  assertConfigError(() => parseConfig({ argv: ['--help'], cwd, appRoot }), new RegExp(`^${prefix}ENOENT`));

  writeJson(appRoot, 'config-default.json', '{ broken');
  assertConfigError(() => parseConfig({ argv: [], cwd, appRoot }), new RegExp(`^${prefix}not valid JSON`));

  writeJson(appRoot, 'config-default.json', []);
  assertConfigError(() => parseConfig({ argv: [], cwd, appRoot }), `${prefix}expected a JSON object, found an array`);

  const shipped: unknown = JSON.parse(fs.readFileSync(SHIPPED_DEFAULTS, 'utf8'));
  assert.ok(typeof shipped === 'object' && shipped !== null);
  const { token: _token, asr: _asr, ...withoutTwo } = shipped as Record<string, unknown>;
  writeJson(appRoot, 'config-default.json', withoutTwo);
  assertConfigError(() => parseConfig({ argv: [], cwd, appRoot }), `${prefix}missing "token", "asr"`);

  writeJson(appRoot, 'config-default.json', { ...shipped, port: 'abc' });
  assertConfigError(
    () => parseConfig({ argv: [], cwd, appRoot }),
    `${prefix}Invalid value for "port": "abc" (expected a whole number)`,
  );

  writeJson(appRoot, 'config-default.json', { ...shipped, 'no-cluster': false });
  assertConfigError(() => parseConfig({ argv: [], cwd, appRoot }), `${prefix}unknown key "no-cluster"`);
});

test('--help and -h return the help text, even next to invalid flags', (t) => {
  const where = setup(t);
  for (const argv of [['--help'], ['-h'], ['--port', 'abc', '--help'], ['--foo', '-h']]) {
    const result = parseConfig({ argv, ...where });
    assert.equal(result.kind, 'help', argv.join(' '));
  }
});

test('the help text lists every option with its default, in the original layout', (t) => {
  const where = setup(t);
  const result = parseConfig({ argv: ['--help'], ...where });
  assert.equal(result.kind, 'help');
  if (result.kind !== 'help') return;
  const text = result.text;
  assert.ok(text.startsWith('\nUsage: node index.js [options]\n\nOptions:\n    --config <path>\t'));
  for (const name of OPTION_NAMES) {
    const flag = name === 'splitmerge' ? '--no-splitmerge' : `--${name}`;
    assert.ok(text.includes(`    ${flag}`) || text.includes(`, ${flag}`), `help lists ${flag}`);
  }
  assert.ok(text.includes('    -p, --port <number>\tPort to bind the server to (default: 3000)\n'));
  assert.ok(text.includes('    -c, --cloud-provider\tCloud provider to use (default: local)\n'));
  assert.ok(text.includes('(default: 8080)'));
  assert.ok(text.includes('(default: 10000)'));
  assert.ok(text.includes('Set log level verbosity (default: info)'));
  assert.ok(text.includes('(default: data)'));
  assert.ok(text.includes('(default: tmp)'));
  // Every option line carries its default.
  const optionLines = text.split('\n').filter((line) => line.startsWith('    '));
  assert.equal(optionLines.length, OPTION_NAMES.length + 1, 'one line per option plus --config');
  for (const line of optionLines) assert.match(line, /\(default: [^)]+\)$/);
  // The original listed "debug" twice and left out "warn".
  assert.ok(text.endsWith('\nLog Levels:\nerror | warn | info | verbose | debug | silly\n'));
});

test('the help text shows the defaults in use and hides secrets', (t) => {
  const where = setup(t);
  const shipped: unknown = JSON.parse(fs.readFileSync(SHIPPED_DEFAULTS, 'utf8'));
  assert.ok(typeof shipped === 'object' && shipped !== null);
  writeJson(where.appRoot, 'config-default.json', { ...shipped, port: 3100, 'admin-pass': 'hunter2', token: 'tok', splitmerge: false });
  const result = parseConfig({ argv: ['-h'], ...where });
  assert.equal(result.kind, 'help');
  if (result.kind !== 'help') return;
  assert.ok(result.text.includes('Port to bind the server to (default: 3100)'));
  assert.ok(!result.text.includes('hunter2'));
  assert.ok(!result.text.includes('(default: tok)'));
  assert.match(result.text, /--no-splitmerge\t.*\(default: true\)/);
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
