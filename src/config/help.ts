import { LOG_LEVELS } from '../core';
import type { Settings } from './config';
import { redactRedisUrl } from '../store/redis/url';

/** Zero means "off" for several options; the original's help shows a word instead of the number. */
function orWord(value: number, zeroWord: string): string {
  return value === 0 ? zeroWord : String(value);
}

function orNone(value: string): string {
  return value === '' ? 'none' : value;
}

/** Secrets from config-default.json are never echoed on the terminal. */
function secret(value: string): string {
  return value === '' ? 'none' : 'set in config-default.json';
}

/**
 * One line per option, in the original's order and wording (including its mix of tabs and spaces), with
 * the defaults taken from config-default.json. The new options follow the original ones.
 */
function optionLines(d: Settings): string[] {
  return [
    `--config <path>\tPath to JSON configuration file. You can use a configuration file instead of passing command line parameters. Command line parameters take precedence over the file. (default: none)`,
    `-p, --port <number>\tPort to bind the server to (default: ${d.port})`,
    `--secure-port <number>\tIf SSL is enabled and you want to expose both a secure and non-secure service, set this value to the secure port. Otherwise only SSL will be enabled using the --port value. (default: ${orWord(d['secure-port'], 'none')})`,
    `--admin-cli-port <number> \tPort to bind the admin CLI to. Set to zero to disable. (default: ${d['admin-cli-port']})`,
    `--admin-web-port <number> \tPort to bind the admin web interface to. Set to zero to disable. (default: ${d['admin-web-port']})`,
    `--admin-pass <string> \tPassword to log-in to the admin functions (default: ${secret(d['admin-pass'])})`,
    `--log-level <logLevel>\tSet log level verbosity (default: ${d['log-level']})`,
    `-c, --cloud-provider\tCloud provider to use (default: ${d['cloud-provider']})`,
    `--upload-max-speed <number>\tUpload to processing nodes speed limit in bytes / second (default: ${orWord(d['upload-max-speed'], 'no limit')})`,
    `--downloads-from-s3 <URL>\tManually set the S3 URL prefix where to redirect /task/<uuid>/download requests. (default: ${d['downloads-from-s3'] || "do not use S3, forward download requests to nodes, unless the autoscaler is setup, in which case the autoscaler's S3 configuration is used"})`,
    `--no-splitmerge\tBy default the program will set itself as being a cluster node for all split/merge tasks. Setting this option disables it. (default: ${String(!d.splitmerge)})`,
    `--public-address <http(s)://host:port>\tShould be set to a public URL that nodes can use to reach ClusterODM. (default: ${d['public-address'] || `match the "host" header from client's HTTP request`})`,
    `--flood-limit <number>\tLimit the number of simultaneous task uploads that a user can initiate concurrently (default: ${orWord(d['flood-limit'], 'no limit')})`,
    `--stale-uploads-timeout <number>\tDelete temporary uploads if no activity is recorded for these many hours. After 48 hours stale uploads are always removed regardless of this option. (default: ${orWord(d['stale-uploads-timeout'], 'do not remove stale uploads')})`,
    `--token <token> Sets a token that needs to be passed for every request. This can be used to limit access to the node only to token holders. (default: ${secret(d.token)})`,
    `--debug \tDisable caches and other settings to facilitate debug (default: ${String(d.debug)})`,
    `--ssl-key <file>\tPath to .pem SSL key file (default: ${orNone(d['ssl-key'])})`,
    `--ssl-cert <file>\tPath to SSL .pem certificate (default: ${orNone(d['ssl-cert'])})`,
    `--asr <file>\tPath to configuration for enabling the autoscaler. This is combined with the provider's default configuration (default: ${orNone(d.asr)})`,
    `--cluster-address <string>\tUnused; accepted so that older configuration files keep working (default: ${orNone(d['cluster-address'])})`,
    `--data-dir <path>\tDirectory where nodes.json and routes.json are stored, relative to the current directory (default: ${d['data-dir']})`,
    `--tmp-dir <path>\tDirectory for uploads in progress, relative to the current directory (default: ${d['tmp-dir']})`,
    `--wait-for-node <seconds>\tAfter a restart, how long a task that was being sent to a node waits for that node to answer before it is sent to another node (default: ${d['wait-for-node']})`,
    `--queue-max <number>\tWith --asr: how many tasks may wait (status QUEUED, first in first out) when no node is free and no machine can be created; beyond it a new task is refused. 0 = no queue: such a task fails at once (default: ${d['queue-max']})`,
    `--log-dir <path>\tDirectory for the log file, relative to the current directory (default: ${d['log-dir'] || 'the program folder'})`,
    `--max-open-uploads <number>\tMaximum number of task uploads initiated and not yet committed, from all clients together (default: ${orWord(d['max-open-uploads'], 'no limit')})`,
    `--max-open-uploads-per-address <number>\tMaximum number of task uploads initiated and not yet committed from one client address (an IPv6 /64 counts as one address) (default: ${orWord(d['max-open-uploads-per-address'], 'no limit')})`,
    `--admin-web-hosts <names>\tComma-separated host names the admin web answers to besides IP addresses and localhost (other Host headers get 421, against DNS rebinding); * = any (default: ${d['admin-web-hosts'].join(',') || 'none'})`,
    `--redis <url>\tKeep the shared state (nodes, routes, task table) in Redis instead of the data directory, so several instances can serve one cluster: redis://[:password@]host:port[/db], rediss://... (TLS) or unix:///path/to/redis.sock[?db=N] (default: ${d.redis === '' ? 'none, the state lives in the data directory' : redactRedisUrl(d.redis)})`,
    `--export-state <path>\tWrite the state (nodes.json, routes.json, tasks.json) to this folder, in the data folder's format, and exit: the way back from --redis to the data folder (default: ${orNone(d['export-state'])})`,
    `--instance-address <host[:port]>\tWith --redis: where the other instances reach this instance's proxy, to pass it the uploads it stages; must be unique per instance (default: ${d['instance-address'] === '' ? "this host's name or the listen address, with the proxy port" : d['instance-address']})`,
  ];
}

/**
 * The `--help` text. Printed with console.log it gives the original's layout: a blank line, the usage,
 * the options, then the log levels (the original listed "debug" twice and left out "warn").
 */
export function helpText(defaults: Settings): string {
  const options = optionLines(defaults).map((line) => `    ${line}`);
  return ['', 'Usage: node index.js [options]', '', 'Options:', ...options, 'Log Levels:', LOG_LEVELS.join(' | '), ''].join(
    '\n',
  );
}
