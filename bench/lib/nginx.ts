/**
 * nginx as a peer in rows a–c: Debian's nginx-light (`scripts/install-test-deps.sh --bench`, or
 * `apt-get install nginx-light`), started by the bench on 127.0.0.1 with its own prefix and config in the run's
 * temp dir (no root paths, no root needed), as a plain reverse proxy to the rows' test node: one worker,
 * `proxy_request_buffering off`, `proxy_buffering off`, HTTP/1.1 with an upstream keep-alive pool. Its CPU is
 * the master's plus the worker's (/proc/<pid>/stat).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { stopChild, trackChild } from './cleanup';
import { cpuMs } from './procs';

/** Where Debian puts it; NGINX=/path/to/nginx overrides. */
export function nginxBinary(): string | null {
  const candidates = [process.env['NGINX'], '/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'];
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  return null;
}

export interface NginxProc {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  /** CPU ms of the master and its worker(s) so far. */
  cpuMs(): number;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** `targetPorts`: one upstream server each, taken in turn (nginx's default round robin, no stickiness). */
export function nginxConf(dir: string, port: number, targetPorts: number | readonly number[]): string {
  const p = (name: string): string => path.join(dir, name);
  return `# Written by the ClusterODM bench (bench/lib/nginx.ts): a plain reverse proxy, no buffering either way.
worker_processes 1;
daemon off;
pid ${p('nginx.pid')};
error_log ${p('error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${p('client_body')};
  proxy_temp_path ${p('proxy_temp')};
  fastcgi_temp_path ${p('fastcgi_temp')};
  uwsgi_temp_path ${p('uwsgi_temp')};
  scgi_temp_path ${p('scgi_temp')};
  client_max_body_size 0;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  upstream node {
${(typeof targetPorts === 'number' ? [targetPorts] : targetPorts).map((t) => `    server 127.0.0.1:${t};`).join('\n')}
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://node;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 300s;
      proxy_send_timeout 300s;
    }
  }
}
`;
}

function children(pid: number): number[] {
  try {
    return fs
      .readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .split(/\s+/)
      .filter((s) => s !== '')
      .map(Number);
  } catch {
    return [];
  }
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** nginx in front of `targetPort` (several: round robin), its prefix in `dir`; null (with the reason logged) when nginx is not installed. */
export async function startNginx(name: string, targetPort: number | readonly number[], dir: string, log: (l: string) => void): Promise<NginxProc | null> {
  const bin = nginxBinary();
  if (!bin) {
    log(`  (${name}: nginx not installed — \`sudo scripts/install-test-deps.sh --bench\` or apt-get install nginx-light; its column stays empty)`);
    return null;
  }
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, nginxConf(dir, port, targetPort));
  const proc = spawn(bin, ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  trackChild(proc);
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-4000)));
  const pid = proc.pid ?? 0;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${name} exited (${proc.exitCode}): ${err}${readLog(dir)}`);
    if (children(pid).length > 0 && (await connects(port))) break;
    if (Date.now() > deadline) {
      await stopChild(proc, 2000);
      throw new Error(`${name} not ready after 15 s: ${err}${readLog(dir)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const workers = children(pid);
  return {
    name,
    pid,
    port,
    url: `http://127.0.0.1:${port}`,
    cpuMs: () => cpuMs(pid) + workers.reduce((s, w) => s + cpuMs(w), 0),
    stop: () => stopChild(proc, 10_000),
  };
}

function readLog(dir: string): string {
  try {
    return fs.readFileSync(path.join(dir, 'error.log'), 'utf8').slice(-2000);
  } catch {
    return '';
  }
}
