import { Router } from 'express';

/** What /readyz reports: ready, or the checks still failing (names only, nothing else about the cluster). */
export interface Readiness {
  ready: boolean;
  /** Among 'state' (not loaded yet), 'listeners' (not all up yet), 'redis' (configured and not answering). */
  failing: string[];
}

/**
 * `GET /healthz` (the process answers) and `GET /readyz` (state loaded, listeners up, Redis reachable when
 * configured; 503 otherwise) for load balancers and container health checks. Mounted before the Host check and the
 * password: a balancer probes with whatever Host it has and no credentials, and these answers say nothing but
 * "ok" or which check fails, so a rebound name or a stranger learns nothing from them. Only these two paths
 * and GET/HEAD; anything else goes on to the Host check and the login as before.
 */
export function healthRoutes(readiness: () => Promise<Readiness>): Router {
  const r = Router();
  r.get('/healthz', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok' });
  });
  r.get('/readyz', (_req, res, next) => {
    readiness().then(
      (s) => {
        res.setHeader('Cache-Control', 'no-store');
        res.status(s.ready ? 200 : 503).json(s.ready ? { status: 'ready' } : { status: 'not ready', failing: s.failing });
      },
      (e: unknown) => next(e),
    );
  });
  return r;
}
