import * as fs from 'node:fs';
import * as path from 'node:path';
import minimist from 'minimist';
import { ClusterError, errorMessage, type LogLevel } from '../core';
import { helpText } from './help';
import { CHECKERS, type Checked, type CloudProviderName, type KindValue, type ValueKind } from './value-checks';

export { CLOUD_PROVIDERS, type CloudProviderName } from './value-checks';

/** File name of the built-in defaults, always read from the program folder. */
export const DEFAULT_CONFIG_FILE = 'config-default.json';

/**
 * Every option, by its dash-case name: the command-line flag (`--<name>`) and the config-file key are the
 * same word, as in the original. The kind decides how a value is checked.
 */
const OPTION_KINDS = {
  port: 'port',
  'secure-port': 'port',
  'admin-cli-port': 'port',
  'admin-web-port': 'port',
  'admin-pass': 'string',
  'admin-web-hosts': 'hostList',
  'log-level': 'logLevel',
  'cloud-provider': 'cloudProvider',
  'upload-max-speed': 'count',
  'downloads-from-s3': 'string',
  splitmerge: 'bool',
  'public-address': 'string',
  'flood-limit': 'count',
  'stale-uploads-timeout': 'count',
  'wait-for-node': 'count',
  'queue-max': 'count',
  token: 'string',
  debug: 'bool',
  'ssl-key': 'string',
  'ssl-cert': 'string',
  asr: 'string',
  // Unused, as in the original; still accepted so existing config files keep loading.
  'cluster-address': 'string',
  'data-dir': 'path',
  'tmp-dir': 'path',
  // "" means the program folder, so it is a plain string rather than a non-empty path.
  'log-dir': 'string',
  'max-open-uploads': 'count',
  'max-open-uploads-per-address': 'count',
  // "" = the state lives in data/ (JSON files); a URL = shared state in Redis (several instances).
  redis: 'redisUrl',
  // A command rather than a setting: write the state to this folder as JSON files, then exit.
  'export-state': 'string',
  // With --redis: host:port other instances reach this one's proxy at ("" = this host's name and the proxy port).
  'instance-address': 'string',
} as const satisfies Record<string, ValueKind>;

export type OptionName = keyof typeof OPTION_KINDS;

/** Checked option values as written in files and flags (paths not yet resolved). */
export type Settings = { readonly [K in OptionName]: KindValue[(typeof OPTION_KINDS)[K]] };

export const OPTION_NAMES: readonly OptionName[] = Object.freeze(Object.keys(OPTION_KINDS).filter(isOptionName));

export interface Config {
  readonly port: number;
  readonly securePort: number;
  readonly adminCliPort: number;
  readonly adminWebPort: number;
  readonly adminPass: string;
  /** Host names the admin web answers to besides IP literals and localhost (lower case; "*" = any). */
  readonly adminWebHosts: readonly string[];
  readonly logLevel: LogLevel;
  readonly cloudProvider: CloudProviderName;
  readonly uploadMaxSpeed: number;
  readonly downloadsFromS3: string;
  readonly splitmerge: boolean;
  readonly publicAddress: string;
  readonly floodLimit: number;
  readonly staleUploadsTimeout: number;
  /** Seconds a task interrupted by a restart waits for its node before it is sent to another one. */
  readonly waitForNode: number;
  /** With --asr: how many tasks may wait for a processing node (0 = none: they fail at once, as the original). */
  readonly queueMax: number;
  readonly token: string;
  readonly debug: boolean;
  readonly sslKey: string;
  readonly sslCert: string;
  readonly asr: string;
  readonly clusterAddress: string;
  /** Absolute, resolved against the working directory. */
  readonly dataDir: string;
  /** Absolute, resolved against the working directory. */
  readonly tmpDir: string;
  /** Absolute; "" in the settings means the program folder (appRoot). */
  readonly logDir: string;
  /** Uploads initialised and not yet committed, in all (0 = no cap). */
  readonly maxOpenUploads: number;
  /** The same per client address (an IPv6 client counts by its /64; 0 = no cap). */
  readonly maxOpenUploadsPerAddress: number;
  /** Redis URL of the shared state (redis://, rediss://, unix://); absent: the JSON files in dataDir. */
  readonly redis?: string;
  /** With --redis: where other instances reach this one's proxy (`host[:port]` or a URL; "" = derived at start). */
  readonly instanceAddress?: string;
  /** --export-state DIR: write nodes.json, routes.json and tasks.json there and exit (absent: run the daemon). */
  readonly exportState?: string;
  /** Absolute path of the --config file, or null when none was given. */
  readonly configFile: string | null;
  /** True when both sslKey and sslCert are set. */
  readonly useSsl: boolean;
}

export type ParseResult = { kind: 'help'; text: string } | { kind: 'config'; config: Config };

export interface ParseArgs {
  /** Command-line arguments, without the node binary and script (process.argv.slice(2)). */
  argv: string[];
  /** Working directory that relative paths (--config, data-dir, tmp-dir, log-dir) are resolved against. */
  cwd: string;
  /** Program folder, where config-default.json lives. */
  appRoot: string;
}

/**
 * Builds the configuration: config-default.json < --config file < command-line flags.
 * Throws ClusterError('CONFIG_INVALID') with a message naming the bad flag, key or file.
 */
export function parseConfig(args: ParseArgs): ParseResult {
  const appRoot = path.resolve(args.appRoot);
  const cwd = path.resolve(args.cwd);
  const defaults = loadDefaults(appRoot);
  const cli = splitCommandLine(args.argv);
  // Like the original, --help wins over any other flag, valid or not.
  if (cli.help) return Object.freeze({ kind: 'help', text: helpText(defaults) });

  const cliLayer = readLayer(cli.entries, CLI_SOURCE);
  const configFile = cli.configPath === undefined ? null : path.resolve(cwd, cli.configPath);
  const fileLayer = configFile === null ? {} : readLayer(Object.entries(loadConfigFile(configFile)), fileSource(configFile));
  const settings: Settings = { ...defaults, ...fileLayer, ...cliLayer };
  return Object.freeze({ kind: 'config', config: buildConfig(settings, { cwd, appRoot, configFile }) });
}

function buildConfig(s: Settings, where: { cwd: string; appRoot: string; configFile: string | null }): Config {
  // Every field is a primitive or a frozen array, so a shallow freeze is already a deep freeze.
  return Object.freeze({
    port: s.port,
    securePort: s['secure-port'],
    adminCliPort: s['admin-cli-port'],
    adminWebPort: s['admin-web-port'],
    adminPass: s['admin-pass'],
    adminWebHosts: s['admin-web-hosts'],
    logLevel: s['log-level'],
    cloudProvider: s['cloud-provider'],
    uploadMaxSpeed: s['upload-max-speed'],
    downloadsFromS3: s['downloads-from-s3'],
    splitmerge: s.splitmerge,
    publicAddress: s['public-address'],
    floodLimit: s['flood-limit'],
    staleUploadsTimeout: s['stale-uploads-timeout'],
    waitForNode: s['wait-for-node'],
    queueMax: s['queue-max'],
    token: s.token,
    debug: s.debug,
    sslKey: s['ssl-key'],
    sslCert: s['ssl-cert'],
    asr: s.asr,
    clusterAddress: s['cluster-address'],
    dataDir: path.resolve(where.cwd, s['data-dir']),
    tmpDir: path.resolve(where.cwd, s['tmp-dir']),
    logDir: s['log-dir'] === '' ? where.appRoot : path.resolve(where.cwd, s['log-dir']),
    maxOpenUploads: s['max-open-uploads'],
    maxOpenUploadsPerAddress: s['max-open-uploads-per-address'],
    ...(s.redis !== '' ? { redis: s.redis } : {}),
    ...(s['instance-address'] !== '' ? { instanceAddress: s['instance-address'] } : {}),
    ...(s['export-state'] !== '' ? { exportState: path.resolve(where.cwd, s['export-state']) } : {}),
    configFile: where.configFile,
    useSsl: s['ssl-key'] !== '' && s['ssl-cert'] !== '',
  });
}

// ---------------------------------------------------------------------------------------------------------
function checkOption<K extends OptionName>(name: K, value: unknown): Checked<Settings[K]> {
  // TypeScript cannot follow the link between a name's kind and its value type through the table lookup.
  return CHECKERS[OPTION_KINDS[name]](value) as Checked<Settings[K]>;
}

function isOptionName(key: string): key is OptionName {
  return Object.hasOwn(OPTION_KINDS, key);
}

/** A value as it appears in an error message: strings quoted, so an empty value is visible. */
function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Layers: the defaults file, the --config file and the command line each give a checked, partial set

type Layer = { -readonly [K in OptionName]?: Settings[K] };

/** How a source names a key in its error messages. */
interface Source {
  label(key: OptionName): string;
  unknownKey(key: string): string;
  error(message: string): ClusterError;
}

const configError = (message: string): ClusterError => new ClusterError('CONFIG_INVALID', message);

const CLI_SOURCE: Source = {
  label: (key) => `--${key}`,
  unknownKey: (key) => `Unknown option: ${key.length === 1 ? '-' : '--'}${key}`,
  error: configError,
};

function fileSource(file: string): Source {
  return {
    label: (key) => `"${key}" in ${file}`,
    unknownKey: (key) =>
      key === 'config'
        ? `Unknown key in ${file}: config (--config can only be given on the command line)`
        : `Unknown key in ${file}: ${key}`,
    error: configError,
  };
}

const defaultsError = (detail: string): ClusterError => configError(`${DEFAULT_CONFIG_FILE} not found or invalid: ${detail}`);

const DEFAULTS_SOURCE: Source = {
  label: (key) => `"${key}"`,
  unknownKey: (key) => `unknown key "${key}"`,
  error: defaultsError,
};

function readLayer(entries: Iterable<readonly [string, unknown]>, source: Source): Layer {
  const layer: Layer = {};
  for (const [key, value] of entries) {
    if (!isOptionName(key)) throw source.error(source.unknownKey(key));
    setChecked(layer, key, value, source);
  }
  return layer;
}

function setChecked<K extends OptionName>(layer: Layer, key: K, value: unknown, source: Source): void {
  const checked = checkOption(key, value);
  if (!checked.ok) {
    throw source.error(`Invalid value for ${source.label(key)}: ${show(value)} (expected ${checked.expected})`);
  }
  layer[key] = checked.value;
}

function isComplete(layer: Layer): layer is Settings {
  return OPTION_NAMES.every((name) => layer[name] !== undefined);
}

function jsonTypeName(v: unknown): string {
  if (v === null) return 'null';
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}

function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads a file that must hold one JSON object; `problem` turns a detail into the caller's error. */
function readJsonObject(file: string, problem: (detail: string) => ClusterError): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e: unknown) {
    throw problem(errorMessage(e));
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e: unknown) {
    throw problem(`not valid JSON (${errorMessage(e)})`);
  }
  if (!isJsonObject(parsed)) throw problem(`expected a JSON object, found ${jsonTypeName(parsed)}`);
  return parsed;
}

/** The program's own defaults: every option must be present, so nothing else needs a fallback. */
function loadDefaults(appRoot: string): Settings {
  const file = path.join(appRoot, DEFAULT_CONFIG_FILE);
  const layer = readLayer(Object.entries(readJsonObject(file, defaultsError)), DEFAULTS_SOURCE);
  if (!isComplete(layer)) {
    const missing = OPTION_NAMES.filter((name) => layer[name] === undefined);
    throw defaultsError(`missing ${missing.map((m) => `"${m}"`).join(', ')}`);
  }
  return layer;
}

function loadConfigFile(file: string): Record<string, unknown> {
  return readJsonObject(file, (detail) => configError(`Cannot use config file ${file}: ${detail}`));
}

// ---------------------------------------------------------------------------------------------------------
// Command line

const ALIASES = { p: 'port', c: 'cloud-provider', h: 'help' } as const;

interface CommandLine {
  help: boolean;
  configPath: string | undefined;
  entries: Array<readonly [string, unknown]>;
}

/**
 * Everything except the booleans is declared a string, so minimist never turns "0123" into 123 and every
 * number goes through our own check. splitmerge and debug are left undeclared so that `--debug false` and
 * `--splitmerge=no` carry their value instead of being read as `true`.
 */
function runMinimist(argv: string[]): minimist.ParsedArgs {
  const strings = [...OPTION_NAMES.filter((name) => OPTION_KINDS[name] !== 'bool'), 'config'];
  return minimist(argv, { string: strings, boolean: ['help'], alias: { ...ALIASES } });
}

/** A repeated flag arrives as an array; the last one wins, as usual for command lines. */
function lastOf(value: unknown): unknown {
  return Array.isArray(value) ? (value as unknown[])[value.length - 1] : value;
}

function splitCommandLine(argv: string[]): CommandLine {
  const parsed = runMinimist(argv);
  const out: CommandLine = { help: parsed['help'] === true, configPath: undefined, entries: [] };
  if (out.help) return out;
  const positional: unknown[] = parsed._;
  // The original ignored stray words; here they are almost always a typo such as `--port 3000 3001`.
  if (positional.length > 0) throw configError(`Unexpected argument: ${String(positional[0])}`);
  for (const key of Object.keys(parsed)) {
    if (key === '_' || key === 'help' || Object.hasOwn(ALIASES, key)) continue;
    const value = lastOf(parsed[key]);
    if (key === 'config') out.configPath = checkConfigPath(value);
    else out.entries.push([key, value]);
  }
  return out;
}

function checkConfigPath(value: unknown): string {
  if (typeof value === 'string' && value !== '') return value;
  throw configError(`Invalid value for --config: ${show(value)} (expected the path of a JSON file)`);
}
