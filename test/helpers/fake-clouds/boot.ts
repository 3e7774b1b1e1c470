/**
 * Boots a fake machine from its user data, as cloud-init would: the script is executed (its own `#!/bin/sh`) with a
 * PATH holding only fake tools (docker, fallocate, mkswap, swapon, chmod, curl; the real awk), so it runs through a
 * real shell, quoting and all, yet cannot touch the host. The `docker run` it issued is then read back and a test
 * NodeODM node is started with those NodeODM flags on the machine's loopback address, port 3000 — as
 * fake-docker-machine.ts does for the docker-machine path.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startTestNode, type TestNode, type TestNodeOptions } from '../test-node';
import { parseTestNodeArgs } from '../test-node-main';

export interface ToolCall {
  tool: string;
  args: string[];
  stdin?: string;
}

export interface BootResult {
  exitCode: number;
  /** stdout and stderr of the script. */
  output: string;
  calls: ToolCall[];
  /** docker's own options (`-d`, `-p 3000:3000`, `--gpus all`, `--mount …`), the image, and the NodeODM flags. */
  dockerOptions: string[];
  image: string | null;
  nodeFlags: string[];
  /** The test node started from `docker run`; null when the script did not get there. */
  node: TestNode | null;
}

export interface BootOptions {
  /** Tools that fail (exit 1) when called. */
  failTools?: string[];
  /** Knobs for the test node (e.g. processingMs). */
  node?: Partial<TestNodeOptions>;
  /** The image has no Docker: `docker` appears only once the install script has been run (`sh <script>`). */
  dockerMissing?: boolean;
}

const TOOLS = ['docker', 'fallocate', 'mkswap', 'swapon', 'chmod', 'curl', 'free', 'sh'];
/** docker run options that take a value. */
const DOCKER_VALUE_OPTIONS = new Set(['-p', '--gpus', '--mount', '-v', '--name', '-e']);

export async function bootUserData(userData: string, ip: string, opts: BootOptions = {}): Promise<BootResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-boot-'));
  try {
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    const opt = path.join(dir, 'opt');
    fs.mkdirSync(opt);
    for (const t of TOOLS) {
      const missing = t === 'docker' && opts.dockerMissing === true;
      fs.writeFileSync(missing ? path.join(opt, 'docker.pending') : path.join(bin, t), fakeTool(t), { mode: 0o755 });
    }
    fs.symlinkSync(fs.realpathSync('/usr/bin/awk'), path.join(bin, 'awk'));
    const script = path.join(dir, 'user-data');
    fs.writeFileSync(script, userData, { mode: 0o700 });
    const { code, output } = await run(script, {
      PATH: `${bin}:${opt}`,
      FAKE_NODE: process.execPath,
      HOME: dir,
      FAKE_BOOT_DIR: dir,
      FAKE_BOOT_FAIL: (opts.failTools ?? []).join(','),
    });
    const calls = readCalls(dir);
    const result: BootResult = { exitCode: code, output, calls, dockerOptions: [], image: null, nodeFlags: [], node: null };
    const runCall = calls.find((c) => c.tool === 'docker' && c.args[0] === 'run');
    if (code !== 0 || !runCall) return result;
    let i = 1;
    while (i < runCall.args.length && (runCall.args[i] ?? '').startsWith('-')) i += DOCKER_VALUE_OPTIONS.has(runCall.args[i] ?? '') ? 2 : 1;
    result.dockerOptions = runCall.args.slice(1, i);
    result.image = runCall.args[i] ?? null;
    result.nodeFlags = runCall.args.slice(i + 1);
    const parsed = parseTestNodeArgs(result.nodeFlags);
    if (parsed === 'help') return result;
    result.node = await startTestNode({ ...parsed, ...opts.node, host: ip, port: 3000 });
    return result;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A fake tool: a shell script (no process but sh per call) that appends its name and arguments to `calls`, fields
 * separated by \x1f and calls by \x1e; `docker login` keeps what came on stdin; tools named in FAKE_BOOT_FAIL fail.
 */
function fakeTool(tool: string): string {
  return [
    '#!/bin/sh',
    `printf '%s\\037' ${tool} "$@" >> "$FAKE_BOOT_DIR/calls"`,
    `printf '\\036' >> "$FAKE_BOOT_DIR/calls"`,
    `if [ ${tool} = docker ] && [ "\${1:-}" = login ]; then IFS= read -r pw || true; printf '%s' "$pw" > "$FAKE_BOOT_DIR/login-stdin"; echo 'Login Succeeded'; fi`,
    `if [ ${tool} = docker ] && [ "\${1:-}" = run ]; then echo 3f4e5d6c7b8a; fi`,
    // "Installing" Docker: the pending fake docker takes its place on PATH (a rename, done by node: no mv here).
    `if [ ${tool} = sh ] && [ -e "$FAKE_BOOT_DIR/opt/docker.pending" ]; then "$FAKE_NODE" -e 'const d=process.env.FAKE_BOOT_DIR+"/opt/";require("fs").renameSync(d+"docker.pending",d+"docker")'; fi`,
    `case ",$FAKE_BOOT_FAIL," in *,${tool},*) echo "${tool}: simulated failure" >&2; exit 1;; esac`,
    'exit 0',
    '',
  ].join('\n');
}

function readCalls(dir: string): ToolCall[] {
  const file = path.join(dir, 'calls');
  if (!fs.existsSync(file)) return [];
  const login = path.join(dir, 'login-stdin');
  const stdin = fs.existsSync(login) ? fs.readFileSync(login, 'utf8') : undefined;
  return fs
    .readFileSync(file, 'utf8')
    .split('\x1e')
    .filter((rec) => rec !== '')
    .map((rec) => {
      const [tool = '', ...args] = rec.split('\x1f').slice(0, -1);
      return tool === 'docker' && args[0] === 'login' && stdin !== undefined ? { tool, args, stdin } : { tool, args };
    });
}

function run(file: string, env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(file, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.once('error', (e) => resolve({ code: 127, output: `${output}${e.message}` }));
    child.once('close', (c) => resolve({ code: c ?? 1, output }));
  });
}
