import * as fs from 'node:fs';
import * as path from 'node:path';
import { ClusterOdm, PRODUCT_NAME, type AppDeps } from './src/app';
import { parseConfig } from './src/config';
import { createLogger, errorMessage, systemClock } from './src/core';

/** The program folder: config-default.json, package.json and public/ live here, wherever we are started from. */
const APP_ROOT = path.resolve(__dirname, '..');

function readVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(APP_ROOT, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Process-level wiring: flags, logger, signals, crash guards. Everything else is built by ClusterOdm. */
export async function main(
  argv: string[],
  overrides: { host?: string; ephemeralPorts?: boolean; tuning?: AppDeps['tuning'] } = {},
): Promise<void> {
  let parsed;
  try {
    parsed = parseConfig({ argv, cwd: process.cwd(), appRoot: APP_ROOT });
  } catch (e: unknown) {
    process.stderr.write(`${errorMessage(e)}\n`);
    process.exit(1);
  }
  if (parsed.kind === 'help') {
    process.stdout.write(parsed.text.endsWith('\n') ? parsed.text : `${parsed.text}\n`);
    process.exit(0);
  }
  const config = parsed.config;
  // Node.js 20 is this program's runtime and the AWS SDK is pinned: its multi-line "upgrade to Node 22" warning
  // at every start would only alarm operators.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  const logDir = config.logDir || APP_ROOT;
  const logger = createLogger({ level: config.logLevel, file: path.join(logDir, `${PRODUCT_NAME}.log`) });
  const version = readVersion();

  if (config.debug) logger.warn('Running in debug mode');
  logger.info(`${PRODUCT_NAME} ${version} started with PID ${process.pid}`);
  logger.debug('Debug messages are ON');

  // Registered before anything starts, so no failure at any point can kill the daemon silently.
  process.on('uncaughtException', (e: Error) => logger.error(`Uncaught Exception: ${e.stack ?? e.message}`));
  process.on('unhandledRejection', (e: unknown) =>
    logger.error(`Unhandled Rejection: ${e instanceof Error ? (e.stack ?? e.message) : errorMessage(e)}`),
  );

  const app = new ClusterOdm({ config, version, clock: systemClock, logger, ...overrides });
  if (config.exportState !== undefined) {
    let code = 0;
    try {
      await app.exportState(config.exportState);
    } catch (e: unknown) {
      logger.error(`Cannot export the state: ${errorMessage(e)}`);
      code = 1;
    }
    await logger.close();
    process.exit(code);
  }
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info(`Received ${signal}, shutting down`);
    void app
      .stop()
      .then(() => {
        logger.info('Bye!');
        return logger.close();
      })
      .finally(() => process.exit(0));
  };
  // SIGQUIT too: the original's systemd unit stops the service with it.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGQUIT'] as const) process.on(sig, () => shutdown(sig));

  try {
    await app.start();
  } catch (e: unknown) {
    logger.error(`Cannot start: ${errorMessage(e)}`);
    await app.stop();
    await logger.close();
    process.exit(1);
  }
}
