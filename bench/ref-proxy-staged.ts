// The bare reference proxy (ref-proxy.ts) plus a copy of every request body written to a file, in the Node.js way
// (fs.createWriteStream, 64 KiB socket reads queued as they come, one thread-pool write each, the file removed once
// the answer is sent): what one more Node.js hop costs when it also keeps the body on disk, as ClusterODM's staging
// does. bench/task-ab.ts runs it beside ClusterODM (`--ref-staged`) to split ClusterODM's extra CPU on row a into
// "writing the copy" and "the rest".
// Run: node dist/bench/ref-proxy-staged.js <target port> [dir, default ./ref-proxy-staged]   (prints "Reference proxy listening on N")
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { endToEnd, serveReference } from './lib/ref-serve';


function main(): void {
  const target = Number(process.argv[2]);
  const dir = path.resolve(process.argv[3] ?? 'ref-proxy-staged');
  if (!Number.isInteger(target) || target <= 0) {
    console.error('Usage: node dist/bench/ref-proxy-staged.js <target port> [dir]');
    process.exit(64);
  }
  fs.mkdirSync(dir, { recursive: true });
  let seq = 0;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });
  const server = http.createServer((req, res) => {
    const file = path.join(dir, `body-${process.pid}-${seq++}`);
    const copy = fs.createWriteStream(file, { highWaterMark: 512 * 1024 });
    copy.on('error', () => res.destroy());
    const up = http.request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: endToEnd(req.headers), agent }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
      answer.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
      copy.end(() => fs.unlink(file, () => undefined));
    });
    req.pipe(up);
    req.pipe(copy);
  });
  serveReference(server, () => {
    agent.destroy();
  });
}

main();
