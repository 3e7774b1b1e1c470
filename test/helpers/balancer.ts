import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export interface Balancer {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** Which backend (index) answered each request, in arrival order. */
  readonly hits: number[];
  /** Backends still in the rotation (a killed instance is taken out, as a balancer's health check would). */
  setBackends(ports: number[]): void;
}

/**
 * A small round-robin HTTP balancer, no stickiness: each request goes to the next backend in turn, streamed both
 * ways (as nginx or HAProxy without session affinity). A backend that refuses a GET's connection is skipped.
 */
export async function startBalancer(t: TestContext, ports: number[]): Promise<Balancer> {
  let backends = [...ports];
  let next = 0;
  const hits: number[] = [];
  const agent = new http.Agent({ keepAlive: false });
  const server = http.createServer((req, res) => {
    const send = (attempt: number): void => {
      if (backends.length === 0) {
        res.writeHead(502).end('no backends');
        return;
      }
      const i = next++ % backends.length;
      const port = backends[i] ?? 0;
      const out = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers, agent });
      out.on('response', (answer) => {
        hits.push(ports.indexOf(port));
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      out.on('error', (e: NodeJS.ErrnoException) => {
        // A GET refused: the next backend gets it (a balancer's retry on connect failure; a body is not replayed).
        if (e.code === 'ECONNREFUSED' && req.method === 'GET' && attempt < backends.length) {
          send(attempt + 1);
          return;
        }
        if (!res.headersSent) res.writeHead(502).end(String(e.message));
        else res.destroy();
      });
      req.pipe(out);
    };
    send(0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    setBackends: (p) => {
      backends = [...p];
    },
  };
}
