// A minimal reverse proxy (node:http, one keep-alive agent, .pipe in both directions, no routing, no checks): the
// floor cost of one more Node.js hop on this machine. Rows b and c run it beside ClusterODM, so a gap can be split
// into "any proxy pays this" and "ClusterODM adds this".
// Run: node dist/bench/ref-proxy.js <target port>   (prints "Reference proxy listening on N")
import * as http from 'node:http';
import { endToEnd, serveReference } from './lib/ref-serve';


function main(): void {
  const target = Number(process.argv[2]);
  if (!Number.isInteger(target) || target <= 0) {
    console.error('Usage: node dist/bench/ref-proxy.js <target port>');
    process.exit(64);
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });
  const server = http.createServer((req, res) => {
    const up = http.request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: endToEnd(req.headers), agent }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
      answer.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  });
  serveReference(server, () => {
    agent.destroy();
  });
}

main();
