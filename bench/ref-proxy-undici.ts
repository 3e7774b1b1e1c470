// bench/ref-proxy.ts with undici's Pool.dispatch as its node client instead of http.request + a keep-alive agent:
// the other half of the node-client A/B (bench/client-ab.ts). Same interface: node dist/bench/ref-proxy-undici.js <port>
import * as http from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { serveReference } from './lib/ref-serve';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function endToEnd(h: http.IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

function main(): void {
  const target = Number(process.argv[2]);
  if (!Number.isInteger(target) || target <= 0) {
    console.error('Usage: node dist/bench/ref-proxy-undici.js <target port>');
    process.exit(64);
  }
  const pool = new Pool(`http://127.0.0.1:${target}`, { connections: 256, pipelining: 1 });
  const server = http.createServer((req, res) => {
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    let abort: ((e?: Error) => void) | null = null;
    let resume: (() => void) | null = null;
    res.on('close', () => {
      if (!res.writableFinished) abort?.(new Error('client went away'));
    });
    const handler: Dispatcher.DispatchHandler = {
      onConnect: (a) => (abort = a),
      onHeaders: (status, raw, r, text) => {
        resume = r;
        const h: string[] = [];
        for (let i = 0; i + 1 < raw.length; i += 2) {
          const k = String(raw[i]);
          if (!HOP_BY_HOP.has(k.toLowerCase())) h.push(k, String(raw[i + 1]));
        }
        res.writeHead(status, text, h);
        return true;
      },
      onData: (chunk) => {
        const ok = res.write(chunk);
        if (!ok && resume) res.once('drain', resume);
        return ok;
      },
      onComplete: () => res.end(),
      onError: () => res.destroy(),
    };
    pool.dispatch({ method: (req.method ?? 'GET') as Dispatcher.HttpMethod, path: req.url ?? '/', headers: endToEnd(req.headers), body: hasBody ? req : null }, handler);
  });
  serveReference(server, () => {
    void pool.destroy();
  });
}

main();
