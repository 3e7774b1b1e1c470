/**
 * A fake `docker-machine` executable for the autoscaler's tests, and the fake remote commands it runs.
 *
 * `installFakeDockerMachine(dir)` writes `dir/bin/docker-machine` (put it first on PATH) and returns a handle to
 * read what it recorded. The executable keeps its state in files (it is a new process at every call):
 *   - `create … <name>` records the call, can fail N times (`failCreate`), registers the droplet at a fake
 *     DigitalOcean API (as the real driver would) and gives the machine a loopback address of its own (127.77.x.y);
 *   - `ssh <name> <command>` runs the command with a real `sh -c`, with fake `docker`, `fallocate`, `mkswap`,
 *     `swapon`, `free`, `chmod` first on PATH: `docker run … <image> <NodeODM flags>` starts a test node on the
 *     machine's address, port 3000, with those flags; anything the remote shell would expand is really expanded;
 *   - `inspect <name>` answers `{"Driver":{"IPAddress":…}}`; `rm -y [-f] <name>` stops the node and deletes the
 *     droplet; `ls -q` lists machines; `--help` exits 0.
 * Every call (its argv) is appended to calls.jsonl. `create`, `ssh` and `ls` can be held until the test releases them
 * (`hold`): a test that must see a call in progress waits on that, not on a guessed delay.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface FakeDmConfig {
  /** The next this-many `create` calls fail. */
  failCreate: number;
  /** Each `create` takes this long. */
  createDelayMs: number;
  /** Commands (`create`, `ssh`, `ls`) that wait while they are listed here; `configure({ hold: [] })` lets them finish. */
  hold: string[];
  /** Base URL of the fake DigitalOcean API ('' = none). */
  doApi: string;
  /** Extra flags for the test nodes the fake `docker run` starts. */
  nodeArgs: string[];
  /** `ssh` answers this exit code for commands containing `failSshMatch` (0 = never). */
  failSshCode: number;
  failSshMatch: string;
}

export interface FakeDmCall {
  tool: string;
  args: string[];
  at: number;
  machine?: string;
}

export interface FakeMachine {
  name: string;
  ip: string;
  dropletId: number | null;
  pid: number | null;
  createArgs: string[];
}

export interface FakeDockerMachine {
  readonly binDir: string;
  readonly stateDir: string;
  /** PATH for a daemon that should use the fake. */
  readonly path: string;
  calls(tool?: string): FakeDmCall[];
  machines(): FakeMachine[];
  configure(patch: Partial<FakeDmConfig>): void;
  /** Kills every test node still running (test cleanup). */
  killAll(): void;
}

const DEFAULTS: FakeDmConfig = { failCreate: 0, createDelayMs: 0, hold: [], doApi: '', nodeArgs: [], failSshCode: 0, failSshMatch: '' };
const REMOTE_TOOLS = ['docker', 'fallocate', 'mkswap', 'swapon', 'free', 'chmod'];

export function installFakeDockerMachine(dir: string, config: Partial<FakeDmConfig> = {}): FakeDockerMachine {
  const binDir = path.join(dir, 'bin');
  const remoteDir = path.join(dir, 'remote-bin');
  const stateDir = path.join(dir, 'state');
  for (const d of [binDir, remoteDir, path.join(stateDir, 'machines')]) fs.mkdirSync(d, { recursive: true });
  const script = __filename;
  const wrapper = (tool: string): string =>
    `#!/bin/sh\nFAKE_DM_DIR=${JSON.stringify(stateDir)} exec ${JSON.stringify(process.execPath)} ${JSON.stringify(script)} ${tool} "$@"\n`;
  fs.writeFileSync(path.join(binDir, 'docker-machine'), wrapper('docker-machine'), { mode: 0o755 });
  for (const t of REMOTE_TOOLS) fs.writeFileSync(path.join(remoteDir, t), wrapper(t), { mode: 0o755 });
  fs.writeFileSync(path.join(stateDir, 'remote-bin'), remoteDir);
  writeJson(path.join(stateDir, 'config.json'), { ...DEFAULTS, ...config });
  const handle: FakeDockerMachine = {
    binDir,
    stateDir,
    path: `${binDir}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    calls: (tool) => readCalls(stateDir).filter((c) => tool === undefined || c.tool === tool),
    machines: () => listMachines(stateDir),
    configure: (patch) => writeJson(path.join(stateDir, 'config.json'), { ...readConfig(stateDir), ...patch }),
    killAll: () => {
      for (const m of listMachines(stateDir)) if (m.pid) killGroup(m.pid);
      for (const pid of readPids(stateDir)) killGroup(pid);
    },
  };
  return handle;
}

// ---------------------------------------------------------------------------------------------
// state files

function writeJson(file: string, v: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(v));
  fs.renameSync(tmp, file);
}

function readConfig(stateDir: string): FakeDmConfig {
  return { ...DEFAULTS, ...(JSON.parse(fs.readFileSync(path.join(stateDir, 'config.json'), 'utf8')) as Partial<FakeDmConfig>) };
}

function readCalls(stateDir: string): FakeDmCall[] {
  const file = path.join(stateDir, 'calls.jsonl');
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as FakeDmCall);
}

function machineFile(stateDir: string, name: string): string {
  return path.join(stateDir, 'machines', `${path.basename(name)}.json`);
}

function listMachines(stateDir: string): FakeMachine[] {
  const dir = path.join(stateDir, 'machines');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as FakeMachine);
}

function readMachine(stateDir: string, name: string): FakeMachine | null {
  const f = machineFile(stateDir, name);
  return fs.existsSync(f) ? (JSON.parse(fs.readFileSync(f, 'utf8')) as FakeMachine) : null;
}

function readPids(stateDir: string): number[] {
  const f = path.join(stateDir, 'pids');
  if (!fs.existsSync(f)) return [];
  return fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map(Number);
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone
  }
}

/** A tiny cross-process lock (mkdir is atomic), for the counters and address allocation. */
function withLock<T>(stateDir: string, fn: () => T): T {
  const lock = path.join(stateDir, 'lock');
  for (let i = 0; ; i++) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      if (i > 2000) throw new Error('fake docker-machine: lock timeout');
      spawnSync('sleep', ['0.01']);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmdirSync(lock);
  }
}

// ---------------------------------------------------------------------------------------------
// the executables

function record(stateDir: string, call: FakeDmCall): void {
  fs.appendFileSync(path.join(stateDir, 'calls.jsonl'), `${JSON.stringify(call)}\n`);
}

function flagValue(args: readonly string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

async function doApi(cfg: FakeDmConfig, token: string, method: string, pathname: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${cfg.doApi}${pathname}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`DigitalOcean API ${method} ${pathname}: ${res.status} ${text}`);
  return text ? (JSON.parse(text) as unknown) : null;
}

/** Waits while the test holds this command. */
async function held(stateDir: string, cmd: string): Promise<void> {
  while (readConfig(stateDir).hold.includes(cmd)) await new Promise((r) => setTimeout(r, 50));
}

async function dockerMachine(stateDir: string, args: string[]): Promise<number> {
  const cfg = readConfig(stateDir);
  const [cmd, ...rest] = args;
  const name = rest[rest.length - 1] ?? '';
  record(stateDir, { tool: 'docker-machine', args, at: Date.now(), ...(cmd && cmd !== 'ls' && cmd !== '--help' ? { machine: name } : {}) });
  switch (cmd) {
    case '--help':
      process.stdout.write('Usage: docker-machine [OPTIONS] COMMAND [arg...]\n');
      return 0;
    case 'ls': {
      // The list is taken when the call starts, as the real one reads its store then.
      const names = listMachines(stateDir).map((m) => m.name);
      await held(stateDir, 'ls');
      for (const name of names) process.stdout.write(`${name}\n`);
      return 0;
    }
    case 'create': {
      const fail = withLock(stateDir, () => {
        const c = readConfig(stateDir);
        if (c.failCreate <= 0) return false;
        writeJson(path.join(stateDir, 'config.json'), { ...c, failCreate: c.failCreate - 1 });
        return true;
      });
      if (cfg.createDelayMs > 0) await new Promise((r) => setTimeout(r, cfg.createDelayMs));
      await held(stateDir, 'create');
      if (fail) {
        process.stderr.write('Error creating machine: Error in driver during machine creation: simulated failure\n');
        return 1;
      }
      const ip = withLock(stateDir, () => {
        const used = new Set(listMachines(stateDir).map((m) => m.ip));
        for (;;) {
          const ip = `127.77.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
          if (!used.has(ip)) return ip;
        }
      });
      let dropletId: number | null = null;
      const token = flagValue(rest, '--digitalocean-access-token') ?? '';
      if (cfg.doApi) {
        const tags = (flagValue(rest, '--digitalocean-tags') ?? '').split(',').filter(Boolean);
        const created = (await doApi(cfg, token, 'POST', '/v2/droplets', {
          name,
          region: flagValue(rest, '--digitalocean-region'),
          size: flagValue(rest, '--digitalocean-size'),
          image: flagValue(rest, '--digitalocean-image'),
          tags,
        })) as { droplet: { id: number } };
        dropletId = created.droplet.id;
      }
      const m: FakeMachine = { name, ip, dropletId, pid: null, createArgs: rest.slice(0, -1) };
      writeJson(machineFile(stateDir, name), m);
      process.stdout.write(`Docker is up and running!\n`);
      return 0;
    }
    case 'ssh': {
      const [machine, command] = rest;
      const m = machine ? readMachine(stateDir, machine) : null;
      if (!m || command === undefined) {
        process.stderr.write(`Host does not exist: "${machine ?? ''}"\n`);
        return 1;
      }
      await held(stateDir, 'ssh');
      if (cfg.failSshCode !== 0 && cfg.failSshMatch && command.includes(cfg.failSshMatch)) return cfg.failSshCode;
      const remoteBin = fs.readFileSync(path.join(stateDir, 'remote-bin'), 'utf8');
      const r = spawnSync('sh', ['-c', command], {
        env: { ...process.env, PATH: `${remoteBin}:${process.env['PATH'] ?? '/usr/bin:/bin'}`, FAKE_DM_DIR: stateDir, FAKE_DM_MACHINE: m.name },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      return r.status ?? 1;
    }
    case 'inspect': {
      const m = readMachine(stateDir, name);
      if (!m) {
        process.stderr.write(`Host does not exist: "${name}"\n`);
        return 1;
      }
      process.stdout.write(JSON.stringify({ Name: m.name, DriverName: 'digitalocean', Driver: { IPAddress: m.ip, DropletID: m.dropletId } }));
      return 0;
    }
    case 'rm': {
      const m = readMachine(stateDir, name);
      if (!m) {
        process.stderr.write(`Error removing host "${name}": Host does not exist: "${name}"\n`);
        return 1;
      }
      if (m.pid) killGroup(m.pid);
      if (cfg.doApi && m.dropletId !== null) {
        const token = flagValue(m.createArgs, '--digitalocean-access-token') ?? '';
        await doApi(cfg, token, 'DELETE', `/v2/droplets/${m.dropletId}`).catch(() => undefined);
      }
      fs.rmSync(machineFile(stateDir, name), { force: true });
      process.stdout.write(`Successfully removed ${name}\n`);
      return 0;
    }
    default:
      process.stderr.write(`fake docker-machine: unknown command ${cmd ?? ''}\n`);
      return 1;
  }
}

/** The fake commands on the remote machine. */
function remote(stateDir: string, tool: string, args: string[]): number {
  const machine = process.env['FAKE_DM_MACHINE'] ?? '';
  record(stateDir, { tool, args, at: Date.now(), machine });
  if (tool === 'free') process.stdout.write('Swap: 1.0Gi\n');
  if (tool !== 'docker') return 0;
  if (args[0] === 'login') {
    fs.readFileSync(0); // the password, from stdin
    process.stdout.write('Login Succeeded\n');
    return 0;
  }
  if (args[0] !== 'run') return 1;
  const m = readMachine(stateDir, machine);
  if (!m) return 1;
  // docker run -d -p 3000:3000 [--gpus all] <image> <NodeODM flags>
  let i = 1;
  while (i < args.length && (args[i] ?? '').startsWith('-')) i += args[i] === '-d' ? 1 : 2;
  const nodeFlags = args.slice(i + 1);
  const cfg = readConfig(stateDir);
  const main = path.join(__dirname, 'test-node-main.js');
  const log = fs.openSync(path.join(stateDir, `${m.name}.node.log`), 'a');
  const child = spawn(process.execPath, [main, '--host', m.ip, '--port', '3000', ...nodeFlags, ...cfg.nodeArgs], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  child.unref();
  withLock(stateDir, () => {
    const cur = readMachine(stateDir, machine);
    if (cur) writeJson(machineFile(stateDir, machine), { ...cur, pid: child.pid ?? null });
    fs.appendFileSync(path.join(stateDir, 'pids'), `${child.pid ?? ''}\n`);
  });
  process.stdout.write('3f4e5d6c7b8a\n');
  return 0;
}

if (require.main === module) {
  const stateDir = process.env['FAKE_DM_DIR'] ?? '';
  const [tool = '', ...args] = process.argv.slice(2);
  const run = tool === 'docker-machine' ? dockerMachine(stateDir, args) : Promise.resolve(remote(stateDir, tool, args));
  run.then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
