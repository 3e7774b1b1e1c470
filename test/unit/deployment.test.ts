// The shipping files (Dockerfile, .dockerignore, docker-compose.yml, docker/data seed, systemd unit) checked
// against the program itself: its default ports and paths (config-default.json read through parseConfig), the
// files it needs at run time, the signals index.ts handles and the nodes.json parser. A change on either side
// that makes them disagree fails here rather than in someone's deployment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfig, type Config } from '../../src/config';
import { NODE_FLAGS } from '../../src/core';
import { parseNodesFile } from '../../src/nodes';
import { parseRoutesFile } from '../../src/routing';

/** The repository root (compiled tests live in dist/test/unit). */
const ROOT = path.resolve(__dirname, '..', '..', '..');
const INSTALL_HINT = 'run `bash scripts/install-test-deps.sh` (it installs the Debian docker-compose package)';

/** Paths the program reads at run time, relative to the program folder. */
const RUNTIME_PATHS = [
  'index.js', // the entry point (package.json "main"); requires dist/index.js
  'dist', // the compiled program
  'config-default.json', // mandatory defaults, read from the program folder
  'package.json', // name and version, read at start
  'public', // the admin web's static files
] as const;

/** The port NodeODM listens on in the opendronemap/nodeodm image. */
const NODEODM_PORT = 3000;

function read(rel: string): string {
  const file = path.join(ROOT, rel);
  assert.ok(fs.existsSync(file), `${rel} is missing from the repository`);
  return fs.readFileSync(file, 'utf8');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function configFor(argv: string[], cwd: string, where: string): Config {
  let parsed;
  try {
    parsed = parseConfig({ argv, cwd, appRoot: ROOT });
  } catch (e: unknown) {
    assert.fail(`${where}: the program rejects the flags ${JSON.stringify(argv)}: ${(e as Error).message}`);
  }
  assert.equal(parsed.kind, 'config', `${where}: the flags ${JSON.stringify(argv)} print help instead of starting`);
  return parsed.config;
}

/** Ports the daemon listens on with this configuration (0 = listener off). */
function listenPorts(c: Config): number[] {
  return [c.port, c.securePort, c.adminCliPort, c.adminWebPort].filter((p) => p > 0).sort((a, b) => a - b);
}

/** Signals index.ts registers a handler for (the graceful shutdown). */
function handledSignals(): Set<string> {
  const src = read('index.ts');
  assert.match(src, /process\.on\(/, 'index.ts registers no signal handler');
  return new Set([...src.matchAll(/['"](SIG[A-Z0-9]+)['"]/g)].map((m) => m[1] ?? ''));
}

function normalizeSignal(s: string): string {
  const up = s.trim().toUpperCase();
  return up.startsWith('SIG') ? up : `SIG${up}`;
}

// ---------------------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  image: string;
  name: string | null;
  instructions: Instruction[];
}

/** Instructions grouped by stage; line continuations joined, comments dropped, as Docker reads them. */
function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  let buf = '';
  let start = 0;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    const trimmed = raw.trim();
    // Comment lines are dropped, also inside a continued instruction; so are empty lines inside one.
    if (trimmed.startsWith('#') || trimmed === '') continue;
    if (buf === '') start = i + 1;
    const body = raw.trimEnd();
    if (body.endsWith('\\')) {
      buf += `${body.slice(0, -1)} `;
      continue;
    }
    buf += body;
    const m = /^\s*(\S+)\s*(.*)$/s.exec(buf);
    if (m) instructions.push({ keyword: (m[1] ?? '').toUpperCase(), args: (m[2] ?? '').trim(), line: start });
    buf = '';
  }
  assert.equal(buf, '', 'the Dockerfile ends inside a continued line');
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const parts = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const asAt = parts.findIndex((w) => w.toUpperCase() === 'AS');
      stages.push({ image: parts[0] ?? '', name: asAt >= 0 ? (parts[asAt + 1] ?? null) : null, instructions: [] });
    } else if (stages.length > 0) {
      stages[stages.length - 1]?.instructions.push(ins);
    }
  }
  return stages;
}

function words(args: string): string[] {
  if (args.startsWith('[')) {
    const parsed: unknown = JSON.parse(args);
    assert.ok(Array.isArray(parsed) && parsed.every((w) => typeof w === 'string'), `not a JSON string array: ${args}`);
    return parsed as string[];
  }
  return args.split(/\s+/).filter((w) => w !== '');
}

function all(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

interface Copy {
  from: string | null;
  sources: string[];
  dest: string;
  workdir: string;
}

/** COPY/ADD instructions of a stage, each with the WORKDIR in force and ${ARG} references substituted. */
function copies(stage: Stage, args: Map<string, string>): Copy[] {
  const out: Copy[] = [];
  let workdir = '/';
  for (const ins of stage.instructions) {
    if (ins.keyword === 'WORKDIR') workdir = path.posix.resolve(workdir, ins.args);
    if (ins.keyword !== 'COPY' && ins.keyword !== 'ADD') continue;
    const tokens = words(ins.args).map((w) => w.replace(/\$\{?(\w+)\}?/g, (_, n: string) => args.get(n) ?? ''));
    const flags = tokens.filter((w) => w.startsWith('--'));
    const paths = tokens.filter((w) => !w.startsWith('--'));
    assert.ok(paths.length >= 2, `Dockerfile line ${ins.line}: ${ins.keyword} needs a source and a destination`);
    const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length) ?? null;
    out.push({ from, sources: paths.slice(0, -1), dest: paths[paths.length - 1] ?? '', workdir });
  }
  return out;
}

/** Where each source of a COPY lands in the image (Docker's rules: a directory's contents go into dest). */
function landed(c: Copy, isDir: (src: string) => boolean): Array<{ src: string; at: string }> {
  const dest = path.posix.resolve(c.workdir, c.dest);
  const intoDir = c.sources.length > 1 || c.dest.endsWith('/');
  return c.sources.map((src) => ({
    src,
    at: isDir(src) || !intoDir ? dest : path.posix.join(dest, path.posix.basename(src)),
  }));
}

function stageWorkdir(stage: Stage): string {
  return all(stage, 'WORKDIR').reduce((wd, i) => path.posix.resolve(wd, i.args), '/');
}

/** ARG defaults: the global ones (before the first FROM) and those of the stage. */
function argDefaults(text: string, stage: Stage): Map<string, string> {
  const out = new Map<string, string>();
  const global = text.split(/^\s*FROM\s/im)[0] ?? '';
  for (const m of global.matchAll(/^\s*ARG\s+(\w+)=(\S*)/gim)) out.set(m[1] ?? '', m[2] ?? '');
  for (const i of all(stage, 'ARG')) {
    const m = /^(\w+)(?:=(\S*))?$/.exec(i.args);
    if (m && m[2] !== undefined) out.set(m[1] ?? '', m[2]);
  }
  return out;
}

/** A .dockerignore matcher for the plain patterns this repository uses (*, **, ?, no exceptions). */
function dockerIgnored(patterns: string[], rel: string): boolean {
  const toRegex = (p: string): RegExp => {
    let re = '';
    for (let i = 0; i < p.length; i++) {
      const ch = p[i] ?? '';
      if (ch === '*' && p[i + 1] === '*') {
        re += '.*';
        i++;
        if (p[i + 1] === '/') i++;
      } else if (ch === '*') re += '[^/]*';
      else if (ch === '?') re += '[^/]';
      else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    return new RegExp(`^${re}$`);
  };
  const target = path.posix.normalize(rel).replace(/^\.\/|\/$/g, '');
  const parts = target.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  return patterns.some((p) => {
    const clean = path.posix.normalize(p.replace(/^\//, '')).replace(/\/$/, '');
    const re = toRegex(clean);
    return prefixes.some((pre) => re.test(pre));
  });
}

function dockerignorePatterns(): string[] {
  return read('.dockerignore')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

interface DockerFacts {
  text: string;
  stages: Stage[];
  final: Stage;
  workdir: string;
  entrypoint: string[];
  /** The configuration the container starts with (entrypoint flags, working directory = WORKDIR). */
  config: Config;
  volumes: string[];
}

let dockerFacts: DockerFacts | undefined;
function docker(): DockerFacts {
  if (dockerFacts) return dockerFacts;
  const text = read('Dockerfile');
  const stages = parseDockerfile(text);
  const final = stages[stages.length - 1];
  assert.ok(final, 'the Dockerfile has no FROM');
  const workdir = stageWorkdir(final);
  const eps = all(final, 'ENTRYPOINT');
  assert.equal(eps.length, 1, 'the runtime stage needs exactly one ENTRYPOINT');
  const ep = eps[0]!;
  assert.ok(
    ep.args.startsWith('['),
    'ENTRYPOINT must use the exec form, so `docker run IMAGE --flag` args reach the program',
  );
  const entrypoint = words(ep.args);
  assert.equal(all(final, 'CMD').length, 0, 'a CMD is passed to the program as flags: put defaults in ENTRYPOINT');
  const config = configFor(nodeCommand(entrypoint).args, workdir, 'Dockerfile ENTRYPOINT');
  const volumes = all(final, 'VOLUME').flatMap((v) => words(v.args));
  dockerFacts = { text, stages, final, workdir, entrypoint, config, volumes };
  return dockerFacts;
}

test('Dockerfile: every stage is FROM node:24-slim (the LTS users run), which satisfies package.json engines', () => {
  const { stages } = docker();
  assert.ok(stages.length >= 2, 'expected a multi-stage build (build stage + runtime stage)');
  for (const s of stages) assert.equal(s.image, 'node:24-slim', `stage ${s.name ?? '(runtime)'} is FROM ${s.image}`);
  const engines = (JSON.parse(read('package.json')) as { engines?: { node?: string } }).engines?.node ?? '';
  const min = /^>=\s*(\d+)/.exec(engines);
  assert.ok(min, `package.json engines.node is "${engines}", expected ">=N"`);
  assert.ok(24 >= Number(min[1]), `node:24 does not satisfy engines.node "${engines}"`);
  assert.equal(Number(min[1]), 20, 'Node.js 20 stays the minimum (the suite runs on 20 and 24)');
});

test('Dockerfile: ENTRYPOINT runs the program entry point with NODE_FLAGS and flags the program accepts', () => {
  const { entrypoint, workdir } = docker();
  const cmd = nodeCommand(entrypoint);
  assert.match(cmd.node, /(^|\/)node$/, 'ENTRYPOINT must start with node');
  assert.deepEqual(cmd.nodeFlags, [...NODE_FLAGS], 'ENTRYPOINT must give node the NODE_FLAGS of src/core/node-flags.ts (no second process)');
  assert.equal(cmd.script, path.posix.join(workdir, 'index.js'), 'ENTRYPOINT must run <WORKDIR>/index.js');
  const main = (JSON.parse(read('package.json')) as { main?: string }).main;
  assert.equal(main, 'index.js', 'package.json main is no longer index.js: update the ENTRYPOINT');
});

test('Dockerfile: EXPOSEs exactly the ports the program listens on by default', () => {
  const { final, config } = docker();
  const exposed = all(final, 'EXPOSE')
    .flatMap((e) => words(e.args))
    .map((p) => Number(p.replace(/\/tcp$/, '')))
    .sort((a, b) => a - b);
  assert.deepEqual(exposed, listenPorts(config), 'EXPOSE differs from the ports of config-default.json + ENTRYPOINT');
});

test('Dockerfile: VOLUME is the data directory, and data, tmp and log directories are writable by the USER', () => {
  const { final, config, volumes, workdir } = docker();
  assert.equal(workdir, '/var/www', 'WORKDIR is /var/www, as in the original image');
  assert.deepEqual(volumes, [config.dataDir], `VOLUME must be <WORKDIR>/<data-dir> = ${config.dataDir}`);
  const users = all(final, 'USER');
  const user = users[users.length - 1]?.args.split(':')[0] ?? '';
  assert.ok(user !== '' && user !== 'root' && user !== '0', 'the runtime stage must switch to a non-root USER');
  const chowns = all(final, 'RUN').filter((r) => new RegExp(`\\bchown\\b[^;&|]*\\b${user}\\b`).test(r.args));
  assert.ok(chowns.length > 0, `no RUN chowns anything to ${user}`);
  // log-dir "" means the program folder: ROOT here, the folder of the ENTRYPOINT's index.js in the image.
  const logDir = config.logDir === ROOT ? workdir : config.logDir;
  for (const [what, dir] of [
    ['data-dir', config.dataDir],
    ['tmp-dir', config.tmpDir],
    ['log-dir', logDir],
  ] as const) {
    assert.notEqual(dir, workdir, `${what} is the program folder, which is not writable by ${user}`);
    const covered = chowns.some((r) => r.args.split(/\s+/).some((w) => path.posix.resolve(workdir, w) === dir));
    assert.ok(covered, `${what} (${dir}) is not created writable for ${user} (mkdir + chown in a RUN)`);
  }
  const stop = all(final, 'STOPSIGNAL')[0]?.args ?? 'SIGTERM';
  assert.ok(handledSignals().has(normalizeSignal(stop)), `STOPSIGNAL ${stop} is not handled by index.ts`);
});

test('Dockerfile: the runtime stage gets every path the program needs, built or from the context', () => {
  const { text, stages, final, workdir } = docker();
  const byName = new Map(stages.filter((s) => s.name).map((s) => [s.name ?? '', s]));
  const finalCopies = copies(final, argDefaults(text, final));
  const isDir = (c: Copy) => (src: string): boolean => {
    if (c.from === null && fs.existsSync(path.join(ROOT, src))) return fs.statSync(path.join(ROOT, src)).isDirectory();
    return src.endsWith('/') || !path.posix.basename(src).includes('.');
  };
  const placed = new Map<string, Copy>();
  for (const c of finalCopies) for (const l of landed(c, isDir(c))) placed.set(l.at, c);
  for (const rel of RUNTIME_PATHS) {
    const at = path.posix.join(workdir, rel);
    assert.ok(placed.has(at), `the runtime stage does not copy ${rel} to ${at}`);
  }

  // dist/ must come from a stage that compiles it: the tsc outDir of that stage's sources.
  const distCopy = placed.get(path.posix.join(workdir, 'dist'))!;
  assert.ok(distCopy.from, 'dist/ must come from the build stage (it is excluded from the context)');
  const build = byName.get(distCopy.from);
  assert.ok(build, `COPY --from=${distCopy.from}: no stage of that name`);
  const tsconfig = JSON.parse(read('tsconfig.json')) as { compilerOptions?: { outDir?: string } };
  const outDir = tsconfig.compilerOptions?.outDir;
  assert.ok(outDir, 'tsconfig.json has no outDir');
  const built = path.posix.join(stageWorkdir(build), outDir);
  assert.equal(distCopy.sources[0], built, 'dist/ is not copied from the outDir of the build stage');
  const compiles = all(build, 'RUN').some((r) => /\bnpm run build\b/.test(r.args));
  assert.ok(compiles, 'the build stage does not run `npm run build`');
  const buildPlaced = new Set(
    copies(build, argDefaults(text, build)).flatMap((c) => c.sources.map((s) => s.replace(/\/$/, ''))),
  );
  for (const need of ['package.json', 'package-lock.json', 'tsconfig.json', 'index.ts', 'src']) {
    assert.ok(buildPlaced.has(need), `the build stage does not copy ${need}`);
  }

  // npm ci: the lock file is present, and the runtime install skips dev dependencies and the tsc `prepare`.
  for (const s of stages) {
    const ci = all(s, 'RUN').find((r) => /\bnpm ci\b/.test(r.args));
    assert.ok(ci, `stage ${s.name ?? '(runtime)'} does not run npm ci`);
    const why = 'npm ci without --ignore-scripts runs `prepare` (tsc) where the sources are absent';
    assert.match(ci.args, /--ignore-scripts/, why);
  }
  const runtimeCi = all(final, 'RUN').find((r) => /\bnpm ci\b/.test(r.args))!;
  assert.match(runtimeCi.args, /--omit=dev/, 'the runtime npm ci must omit dev dependencies');

  // Every context source exists and is not excluded by .dockerignore, or `docker build` fails.
  const ignore = dockerignorePatterns();
  for (const must of ['node_modules', 'dist', 'data', 'tmp', '.git']) {
    assert.ok(dockerIgnored(ignore, must), `.dockerignore must exclude ${must}`);
  }
  for (const s of stages) {
    for (const c of copies(s, argDefaults(text, s))) {
      if (c.from !== null) continue;
      for (const src of c.sources) {
        assert.ok(fs.existsSync(path.join(ROOT, src)), `COPY ${src}: not in the repository, docker build would fail`);
        assert.ok(!dockerIgnored(ignore, src), `COPY ${src}: excluded by .dockerignore`);
      }
    }
  }
});

test('Dockerfile: docker-machine is a pinned, checksummed release; telnet and curl are installed', () => {
  const { text, final } = docker();
  const args = argDefaults(text, final);
  const version = args.get('DOCKER_MACHINE_VERSION') ?? '';
  assert.match(version, /^v\d+\.\d+\.\d+(-gitlab\.\d+)?$/, 'ARG DOCKER_MACHINE_VERSION must pin a release');
  const sums = [...args].filter(([k]) => /^DOCKER_MACHINE_SHA256/.test(k));
  assert.ok(sums.length > 0, 'no ARG DOCKER_MACHINE_SHA256_* checksum');
  for (const [k, v] of sums) assert.match(v, /^[0-9a-f]{64}$/, `${k} is not a sha256`);
  const run = all(final, 'RUN').find((r) => /docker-machine/.test(r.args) && /\bcurl\b|\bwget\b/.test(r.args));
  assert.ok(run, 'no RUN downloads docker-machine');
  assert.match(run.args, /\$\{?DOCKER_MACHINE_VERSION\}?/, 'the docker-machine URL does not use the pinned version');
  assert.match(run.args, /sha256sum -c/, 'the docker-machine download is not checked with sha256sum -c');
  assert.doesNotMatch(run.args, /\/(main|latest)\//, 'docker-machine is downloaded from a moving URL');
  const installs = all(final, 'RUN')
    .filter((r) => /apt-get install/.test(r.args))
    .map((r) => r.args)
    .join(' ');
  for (const pkg of ['telnet', 'curl']) assert.match(installs, new RegExp(`\\b${pkg}\\b`), `${pkg} is not installed`);
});

// ---------------------------------------------------------------------------------------------------------
// docker-compose.yml

/** `docker-compose config` of the shipped file, as JSON (v2 prints it; v1 prints YAML, read with PyYAML). */
function composeConfig(name = 'docker-compose.yml'): Record<string, unknown> {
  const file = path.join(ROOT, name);
  assert.ok(fs.existsSync(file), `${name} is missing`);
  const tools: Array<[string, string[]]> = [
    ['docker-compose', []],
    ['docker', ['compose']],
  ];
  const run = (cmd: string, args: string[], input?: string) =>
    spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000, input, env: process.env });
  const tool = tools.find(([cmd, pre]) => run(cmd, [...pre, 'version']).status === 0);
  if (!tool) assert.fail(`docker-compose is not installed, so docker-compose.yml cannot be checked: ${INSTALL_HINT}`);
  const [cmd, pre] = tool;
  const asJson = run(cmd, [...pre, '-f', file, 'config', '--format', 'json']);
  if (asJson.status === 0) {
    try {
      const v: unknown = JSON.parse(asJson.stdout);
      if (isRecord(v)) return v;
    } catch {
      // docker-compose v1 has no --format (it prints its usage): fall through to YAML.
    }
  }
  const yaml = run(cmd, [...pre, '-f', file, 'config']);
  assert.equal(yaml.status, 0, `docker-compose config rejects ${name}:\n${yaml.stderr}${yaml.stdout}`);
  const toJson = run(
    'python3',
    ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'],
    yaml.stdout,
  );
  assert.equal(
    toJson.status,
    0,
    `cannot read the output of docker-compose config (python3 + PyYAML): ${toJson.stderr}. ${INSTALL_HINT}`,
  );
  const v: unknown = JSON.parse(toJson.stdout);
  assert.ok(isRecord(v), 'docker-compose config printed no mapping');
  return v;
}

function services(c: Record<string, unknown>, name = 'docker-compose.yml'): Record<string, Record<string, unknown>> {
  const s = c['services'];
  assert.ok(isRecord(s), `${name} has no services`);
  const out: Record<string, Record<string, unknown>> = {};
  for (const [k, v] of Object.entries(s)) if (isRecord(v)) out[k] = v;
  return out;
}

/** Container ports of a `ports` list, short ("4000:3000", "127.0.0.1:4000:3000/tcp") or long ({target}). */
function containerPorts(ports: unknown): number[] {
  assert.ok(Array.isArray(ports), 'clusterodm publishes no ports');
  return ports
    .map((p: unknown) => {
      if (isRecord(p)) return Number(p['target']);
      const s = String(p).replace(/\/(tcp|udp)$/, '');
      return Number(s.split(':').pop());
    })
    .sort((a, b) => a - b);
}

/** Bind mounts of a `volumes` list as {source, target}, short ("src:dst[:mode]") or long form. */
function mounts(volumes: unknown): Array<{ source: string; target: string }> {
  if (!Array.isArray(volumes)) return [];
  return volumes.map((v: unknown) => {
    if (isRecord(v)) return { source: String(v['source'] ?? ''), target: String(v['target'] ?? '') };
    const parts = String(v).split(':');
    const last = parts[parts.length - 1] ?? '';
    if (parts.length >= 3 && /^[a-zA-Z,]+$/.test(last)) parts.pop(); // the mode: rw, ro, z, ...
    return { source: parts.slice(0, -1).join(':'), target: parts[parts.length - 1] ?? '' };
  });
}

function dependsOn(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  if (isRecord(v)) return Object.keys(v);
  return [];
}

interface ComposeFacts {
  all: Record<string, Record<string, unknown>>;
  cluster: Record<string, unknown>;
  /** The configuration the clusterodm container starts with (ENTRYPOINT flags + compose `command`). */
  config: Config;
}

let composeFacts: ComposeFacts | undefined;
function compose(): ComposeFacts {
  if (composeFacts) return composeFacts;
  const all = services(composeConfig());
  const cluster = all['clusterodm'];
  assert.ok(cluster, 'docker-compose.yml has no clusterodm service');
  const command = cluster['command'];
  const extra = Array.isArray(command) ? command.map(String) : typeof command === 'string' ? command.split(/\s+/) : [];
  const d = docker();
  const config = configFor([...nodeCommand(d.entrypoint).args, ...extra], d.workdir, 'clusterodm command');
  composeFacts = { all, cluster, config };
  return composeFacts;
}

test('docker-compose.yml: clusterodm builds this Dockerfile and maps the ports the program listens on', () => {
  const { cluster, config } = compose();
  const build = cluster['build'];
  const context = isRecord(build) ? String(build['context'] ?? '') : String(build ?? '');
  assert.equal(path.resolve(ROOT, context), ROOT, 'clusterodm must build the repository root');
  const ports = containerPorts(cluster['ports']);
  assert.deepEqual(ports, listenPorts(config), 'container ports differ from the ports the program listens on');
  assert.deepEqual(ports, listenPorts(docker().config), 'container ports differ from the Dockerfile EXPOSE');
  assert.equal(cluster['restart'], 'on-failure:10');
});

test('docker-compose.yml: the data folder is mounted at the Dockerfile VOLUME', () => {
  const { cluster, config } = compose();
  assert.equal(config.dataDir, docker().volumes[0], 'the data directory differs from the Dockerfile VOLUME');
  const data = mounts(cluster['volumes']).find((m) => m.target === config.dataDir);
  assert.ok(data, `nothing is mounted at ${config.dataDir}`);
  const seed = path.join(ROOT, 'docker', 'data');
  assert.equal(path.resolve(ROOT, data.source), seed, 'the data folder is not ./docker/data');
});

test('docker/data seed: nodes.json loads with the program parser and points at the compose NodeODM service', () => {
  const { all, cluster } = compose();
  const nodes = parseNodesFile(JSON.parse(read('docker/data/nodes.json')));
  assert.ok(nodes.length > 0, 'the seed nodes.json lists no node');
  const deps = dependsOn(cluster['depends_on']);
  for (const n of nodes) {
    const svc = all[n.hostname] ?? Object.values(all).find((s) => s['container_name'] === n.hostname);
    assert.ok(svc, `nodes.json names ${n.hostname}, which is not a compose service`);
    assert.match(String(svc['image'] ?? ''), /nodeodm/, `${n.hostname} does not run NodeODM`);
    assert.equal(Number(n.port), NODEODM_PORT, `${n.hostname}: NodeODM listens on ${NODEODM_PORT}`);
    const expose = svc['expose'];
    if (Array.isArray(expose)) {
      assert.ok(expose.map(String).includes(String(NODEODM_PORT)), `${n.hostname} does not expose ${NODEODM_PORT}`);
    }
    assert.ok(deps.includes(n.hostname), `clusterodm does not depend_on ${n.hostname}`);
  }
  const routes = parseRoutesFile(JSON.parse(read('docker/data/routes.json')), () => undefined);
  assert.equal(routes.routes.size + routes.dropped.length, 0, 'the seed routes.json must be empty ({})');
});

// ---------------------------------------------------------------------------------------------------------
// Health checks (README "Health endpoints")

/** The liveness probe every image and compose file runs: node fetches /healthz on the admin web port. */
function assertLivenessProbe(argv: string[], where: string): void {
  const port = docker().config.adminWebPort;
  assert.ok(port > 0, 'the admin web is off by default: the health endpoints live there');
  const [node, flag, script] = argv;
  assert.equal(node, 'node', `${where}: the probe must run node (node:24-slim has no curl or wget by itself)`);
  assert.equal(flag, '-e', where);
  assert.equal(argv.length, 3, where);
  assert.match(String(script), new RegExp(`^fetch\\('http://127\\.0\\.0\\.1:${port}/healthz'\\)`), `${where}: not /healthz on the admin web port`);
  // The script exits 0 only for a 2xx answer, 1 for anything else or no answer.
  assert.match(String(script), /process\.exit\(r\.ok \? 0 : 1\), \(\) => process\.exit\(1\)/, where);
}

test('Dockerfile: HEALTHCHECK probes /healthz on the admin web port with node', () => {
  const checks = all(docker().final, 'HEALTHCHECK');
  assert.equal(checks.length, 1, 'the runtime stage needs one HEALTHCHECK');
  const m = /^((?:--[a-z-]+=\S+\s+)*)CMD\s+(\[.*\])$/s.exec(checks[0]!.args);
  assert.ok(m, `HEALTHCHECK must be "[--options] CMD [exec form]": ${checks[0]!.args}`);
  assertLivenessProbe(words(m[2] ?? ''), 'Dockerfile HEALTHCHECK');
});

function healthcheckCommand(svc: Record<string, unknown>, where: string): string[] {
  const hc = svc['healthcheck'];
  assert.ok(isRecord(hc), `${where} has no healthcheck`);
  const cmd = hc['test'];
  assert.ok(Array.isArray(cmd) && cmd[0] === 'CMD', `${where}: healthcheck test must be ["CMD", ...]`);
  return cmd.slice(1).map(String);
}

test('docker-compose.yml: clusterodm has the healthcheck of the Dockerfile', () => {
  assertLivenessProbe(healthcheckCommand(compose().cluster, 'clusterodm'), 'docker-compose.yml clusterodm');
});

// ---------------------------------------------------------------------------------------------------------
// docker-compose.cluster.yml (README "Running several instances")

function flagValue(args: string[], flag: string): string | undefined {
  const i = args.lastIndexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

test('docker-compose.cluster.yml: Redis with appendonly, two instances sharing it, one NodeODM, HAProxy in front', () => {
  const all = services(composeConfig('docker-compose.cluster.yml'), 'docker-compose.cluster.yml');
  const redis = all['redis'];
  assert.ok(redis, 'no redis service');
  assert.match(String(redis['image']), /^redis(:|$)/);
  const redisCmd = (redis['command'] as unknown[]).map(String);
  assert.equal(flagValue(redisCmd, '--appendonly'), 'yes', 'Redis must run with appendonly yes (nothing acknowledged is lost)');
  assert.ok(
    mounts(redis['volumes']).some((m) => m.target === '/data'),
    'Redis must keep /data in a volume',
  );
  assert.ok(Object.values(all).some((svc) => /nodeodm/.test(String(svc['image'] ?? ''))), 'no NodeODM service');

  const instances = Object.entries(all).filter(([, svc]) => svc['build'] !== undefined);
  assert.equal(instances.length, 2, 'two ClusterODM instances, built from this repository');
  const addresses = new Set<string>();
  for (const [name, svc] of instances) {
    const build = svc['build'];
    const context = isRecord(build) ? String(build['context'] ?? '') : String(build ?? '');
    assert.equal(path.resolve(ROOT, context), ROOT, `${name} must build the repository root`);
    const args = (svc['command'] as unknown[]).map(String);
    assert.equal(flagValue(args, '--redis'), 'redis://redis:6379', `${name} must use the redis service`);
    const address = flagValue(args, '--instance-address');
    assert.equal(address, `http://${name}:${docker().config.port}`, `${name}: --instance-address must name itself on the proxy port`);
    addresses.add(String(address));
    configFor([...nodeCommand(docker().entrypoint).args, ...args], docker().workdir, `${name} command`);
    assertLivenessProbe(healthcheckCommand(svc, name), `docker-compose.cluster.yml ${name}`);
    assert.ok(dependsOn(svc['depends_on']).includes('redis'), `${name} must depend on redis`);
    assert.equal(svc['ports'], undefined, `${name} publishes no port: the balancer does`);
  }
  assert.equal(addresses.size, 2, 'the instances need distinct addresses');

  const lb = all['haproxy'];
  assert.ok(lb, 'no haproxy service');
  const cfgMount = mounts(lb['volumes']).find((m) => m.target === '/usr/local/etc/haproxy/haproxy.cfg');
  assert.ok(cfgMount, 'haproxy.cfg is not mounted');
  assert.equal(path.relative(ROOT, path.resolve(ROOT, cfgMount.source)), path.join('docker', 'haproxy.cfg'));
  assert.deepEqual(containerPorts(lb['ports']), listenPorts(docker().config), 'the balancer publishes the program ports');
  const cfg = read('docker/haproxy.cfg');
  for (const port of listenPorts(docker().config)) assert.match(cfg, new RegExp(`^\\s*bind :${port}$`, 'm'), `haproxy does not listen on ${port}`);
  for (const [name] of instances) {
    for (const port of listenPorts(docker().config)) {
      assert.match(cfg, new RegExp(`^\\s*server ${name} ${name}:${port}$`, 'm'), `haproxy does not send ${port} to ${name}`);
    }
  }
  // Only ready instances get traffic, probed where the program answers without a password.
  assert.equal((cfg.match(/^\s*option httpchk GET \/readyz$/gm) ?? []).length, 3);
  assert.match(cfg, new RegExp(`default-server check port ${docker().config.adminWebPort}\\b`));
  assert.doesNotMatch(cfg, /\b(cookie|stick|balance source)\b/, 'no stickiness: any instance answers any request');
});

// ---------------------------------------------------------------------------------------------------------
// services/clusterodm.service

function unitFile(): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of read('services/clusterodm.service').split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      current = new Map();
      sections.set(sec[1] ?? '', current);
      continue;
    }
    const kv = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
    assert.ok(kv && current, `clusterodm.service: cannot read "${line}"`);
    const list = current.get(kv[1] ?? '') ?? [];
    list.push(kv[2] ?? '');
    current.set(kv[1] ?? '', list);
  }
  return sections;
}

test('systemd unit: ExecStart runs index.js from the program folder with flags the program accepts', () => {
  const service = unitFile().get('Service');
  assert.ok(service, 'clusterodm.service has no [Service] section');
  const one = (k: string): string | undefined => service.get(k)?.at(-1);
  const workdir = one('WorkingDirectory') ?? '';
  assert.ok(path.posix.isAbsolute(workdir), 'WorkingDirectory must be an absolute path');
  const user = one('User') ?? '';
  assert.ok(user !== '' && user !== 'root', 'the unit must run as a non-root User');
  const cmd = nodeCommand((one('ExecStart') ?? '').replace(/^[-@+!:]+/, '').split(/\s+/).filter((w) => w !== ''));
  assert.match(cmd.node, /^\/.*\/node$/, 'ExecStart must run node by absolute path');
  assert.deepEqual(cmd.nodeFlags, [...NODE_FLAGS], 'ExecStart must give node the NODE_FLAGS of src/core/node-flags.ts');
  const script = path.posix.resolve(workdir, cmd.script);
  assert.equal(path.posix.basename(script), 'index.js', 'ExecStart must run index.js');
  assert.equal(path.posix.dirname(script), workdir, 'ExecStart must run the index.js of the WorkingDirectory');
  configFor(cmd.args, workdir, 'ExecStart');
  assert.equal(one('Restart'), 'always');
});

test('systemd unit: stops the daemon with a signal index.ts handles', () => {
  const service = unitFile().get('Service')!;
  const handled = handledSignals();
  const kill = service.get('KillSignal')?.at(-1) ?? 'SIGTERM';
  assert.ok(handled.has(normalizeSignal(kill)), `KillSignal=${kill} is not handled by index.ts`);
  for (const stop of service.get('ExecStop') ?? []) {
    const m = /kill\s+(?:-s\s+|-)([A-Za-z0-9]+)/.exec(stop);
    assert.ok(m, `ExecStop=${stop}: cannot tell which signal it sends`);
    assert.ok(handled.has(normalizeSignal(m[1] ?? '')), `ExecStop sends ${m[1]}, which index.ts does not handle`);
  }
});

/** `node [node flags] script [args]` split into its parts. */
function nodeCommand(argv: readonly string[]): { node: string; nodeFlags: string[]; script: string; args: string[] } {
  const i = argv.findIndex((w, k) => k > 0 && !w.startsWith('-'));
  return { node: argv[0] ?? '', nodeFlags: argv.slice(1, i < 0 ? argv.length : i), script: argv[i] ?? '', args: i < 0 ? [] : argv.slice(i + 1) };
}

test('package.json: `npm start` runs index.js with NODE_FLAGS', () => {
  const start = (JSON.parse(read('package.json')) as { scripts?: { start?: string } }).scripts?.start ?? '';
  const cmd = nodeCommand(start.split(/\s+/).filter((w) => w !== ''));
  assert.equal(cmd.node, 'node');
  assert.deepEqual(cmd.nodeFlags, [...NODE_FLAGS], 'npm start must give node the NODE_FLAGS of src/core/node-flags.ts');
  assert.equal(cmd.script, 'index.js');
});
