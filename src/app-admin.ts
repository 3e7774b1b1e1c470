import * as path from 'node:path';
import type { AdminWeb, AdminWebOptions } from './admin-web';
import type { Autoscaler } from './autoscaler';
import { AdminCli } from './cli';
import type { AppDeps } from './app';

/** What the admin listeners show and act on, shared with the rest of the daemon. */
export type AdminViews = Pick<
  AdminWebOptions,
  'nodeOps' | 'taskOps' | 'registry' | 'routes' | 'tasks' | 'local' | 'history' | 'client' | 'readiness'
> & { asr: Autoscaler | null };

/** The admin web (port 10000) and the telnet CLI (port 8080), each null when its port is 0. */
export function buildAdminListeners(deps: AppDeps, views: AdminViews): { web: AdminWeb | null; cli: AdminCli | null } {
  const { config, clock, logger } = deps;
  const host = deps.host !== undefined ? { host: deps.host } : {};
  const web =
    config.adminWebPort > 0
      ? new (loadAdminWeb())({
          port: deps.ephemeralPorts ? 0 : config.adminWebPort,
          ...host,
          password: config.adminPass,
          allowedHosts: config.adminWebHosts,
          version: deps.version,
          // public/ lives in the program folder (the original resolved it against the working directory).
          publicDir: path.resolve(__dirname, '..', '..', 'public'),
          ...views,
          clock,
          logger,
        })
      : null;
  const cli =
    config.adminCliPort > 0
      ? new AdminCli({
          port: deps.ephemeralPorts ? 0 : config.adminCliPort,
          ...host,
          password: config.adminPass,
          version: deps.version,
          nodeOps: views.nodeOps,
          taskOps: views.taskOps,
          routes: views.routes,
          asr: views.asr,
          clock,
          logger,
        })
      : null;
  return { web, cli };
}

/** express (~17 MB of RSS, ~0.1 s of start) is loaded only when the admin web is enabled. */
function loadAdminWeb(): typeof AdminWeb {
  return (require('./admin-web') as typeof import('./admin-web')).AdminWeb;
}
