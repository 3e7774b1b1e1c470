import { spawn } from 'node:child_process';

/**
 * V8 flags ClusterODM runs with, however it is started (`node index.js`, `npm start`, Docker, systemd).
 *
 * `--initial-heap-size=48`: a floor of 48 MiB under V8's old-generation limit. Every socket read allocates a fresh
 * 64 KiB buffer; V8 counts that external memory against the old-generation limit, and a daemon with a small heap
 * (~8 MiB live, few routes) gets a limit only ~16 MiB above it. V8 then starts a full (incremental) mark-compact
 * about every 60 ms while data flows, long before a cheap scavenge would free those buffers: measured on four
 * 256 MiB downloads, 73 mark-compacts with ~60 ms of background marking each, and 4.5–5.4 ms of CPU per MiB
 * (the bare reference proxy, with its smaller heap, never entered that cycle: 2.2–2.4). With a 48 MiB floor: 4
 * mark-compacts, 2.2 ms/MiB; 64 MiB removed the last ones but cost memory (peak RSS of 10 uploads of 1 GiB:
 * 150.5 MB, over the 150 MB target; 147.2 MB at 48). Large heaps (many routes) are not affected: their limit has
 * room. The flag only moves the limit: garbage is still collected.
 *
 * V8 reads it only at process start (`v8.setFlagsFromString` is too late, and NODE_OPTIONS refuses it), hence
 * `withNodeFlags` below. `--no-incremental-marking`, which can be set at run time, was measured and rejected: with
 * it V8 let the old generation grow to hundreds of MiB of garbage before collecting.
 *
 * `--max-semi-space-size=1`: a young generation of 1 MiB semi-spaces, so that the buffers of an upload (every body
 * chunk is a fresh malloc'd buffer of up to 64 KiB) are freed by frequent cheap scavenges instead of piling up until
 * V8's external-memory limit starts a full mark-compact. glibc keeps those 64 KiB blocks in its brk heap, which
 * never shrinks below its highest point, so peak RSS follows the highest count of buffers alive or not yet collected.
 * Node 24 (V8 13.6) sizes the young generation so that, without the flag, a row-d upload (10 clients) ran 226
 * mark-compacts and 203 scavenges over 10 × 1 GiB and peaked at 182 MB; with it 21 and 700, peak 164 MB. Node 20:
 * 3 instead of ~20 mark-compacts per 10 × 128 MiB, peak 126 instead of 132–138 MB. See README "Performance".
 */
export const NODE_FLAGS: readonly string[] = ['--initial-heap-size=48', '--max-semi-space-size=1'];

/** The flags of NODE_FLAGS that `execArgv` does not set (by name: `--initial-heap-size=128` counts as set). */
export function missingNodeFlags(execArgv: readonly string[], wanted: readonly string[] = NODE_FLAGS): string[] {
  const name = (f: string): string => (f.split('=')[0] ?? f).replace(/_/g, '-');
  const have = new Set(execArgv.map(name));
  return wanted.filter((f) => !have.has(name(f)));
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP'] as const;

/**
 * Runs `script` in a child node with the missing NODE_FLAGS, or returns false when nothing is missing (or
 * CLUSTERODM_NO_RESPAWN=1): the caller then runs in this process. The parent only waits: stdio is shared,
 * SIGINT/SIGTERM/SIGQUIT/SIGHUP are passed on (a stop by Docker or systemd reaches the daemon), and the parent ends
 * as the child did (same exit code, or the same signal). Giving the flags on the command line
 * (`node --initial-heap-size=48 --max-semi-space-size=1 index.js`) avoids the second process.
 */
export function withNodeFlags(script: string, argv: readonly string[]): boolean {
  const missing = missingNodeFlags(process.execArgv);
  if (missing.length === 0 || process.env['CLUSTERODM_NO_RESPAWN'] === '1') return false;
  const child = spawn(process.execPath, [...missing, ...process.execArgv, script, ...argv], {
    stdio: 'inherit',
    env: { ...process.env, CLUSTERODM_NO_RESPAWN: '1' },
  });
  for (const sig of FORWARDED) {
    process.on(sig, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    });
  }
  child.on('error', (e: Error) => {
    process.stderr.write(`Cannot start ClusterODM: ${e.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      for (const sig of FORWARDED) process.removeAllListeners(sig);
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code ?? 1);
  });
  return true;
}
