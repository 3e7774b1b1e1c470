/**
 * The cloud-init user data of each provider, from that provider's ASR configuration: the exact script, then the
 * script run through a real /bin/sh with fake tools (test/helpers/fake-clouds/boot.ts), which is what a machine does.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { systemClock } from '../../src/core';
import { apiProviderFromConfig } from '../../src/autoscaler/providers/api/config';
import { renderUserData } from '../../src/autoscaler/drivers/cloud-init';
import { bootUserData, type BootResult } from '../helpers/fake-clouds/boot';

const TOKEN = 'nOdEtOkEn_123';
const WEBHOOK = 'https://cluster.example.com/commit?token=user&secret=abc';
const S3 = { accessKey: 'S3KEY', secretKey: 'S3SECRET', endpoint: 'nyc3.digitaloceanspaces.com', bucket: 'odm-results' };

function userDataFor(config: Record<string, unknown>, webhook = WEBHOOK): string {
  const p = apiProviderFromConfig(config, { clock: systemClock });
  return renderUserData({ ...p.cloudInit, nodeToken: TOKEN, webhookUrl: webhook });
}

function memTotalKb(): number {
  const m = /MemTotal:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return Number(m?.[1]);
}

async function boot(userData: string, t: { after(fn: () => Promise<void>): void }): Promise<BootResult> {
  const r = await bootUserData(userData, '127.0.0.1');
  t.after(async () => {
    await r.node?.close();
  });
  return r;
}

const HEAD = ['#!/bin/sh', '# ClusterODM machine setup: run once by cloud-init, as root, at first boot.', 'set -eu'];
const DOCKER = ['# docker', 'if ! command -v docker >/dev/null 2>&1; then', '  curl -fsSL -o /root/install-docker.sh https://get.docker.com', '  sh /root/install-docker.sh', 'fi'];
const swap = (factor: string): string[] => [
  '# swap',
  `swap_bytes=$(awk -v factor=${factor} '/MemTotal/ {printf "%.0f", $2 * factor * 1024}' /proc/meminfo)`,
  'fallocate -l "$swap_bytes" /swapfile',
  'chmod 600 /swapfile',
  'mkswap /swapfile',
  'swapon /swapfile',
];

test('cloud-init for DigitalOcean: swap as addSwap says, registry login with the password on stdin, NodeODM with GPU, S3 flags, webhook and token', async (t) => {
  const ud = userDataFor({
    provider: 'digitalocean',
    accessToken: 'dop_v1_x',
    s3: S3,
    addSwap: 0.5,
    dockerGpu: true,
    dockerImage: 'registry.example.com/odm/nodeodm:gpu',
    dockerRegistry: { url: 'registry.example.com', username: 'odm', password: "p@ss w'rd" },
  });
  assert.equal(
    ud,
    [
      ...HEAD,
      ...swap('0.5'),
      ...DOCKER,
      '# registry',
      `printf '%s' 'p@ss w'\\''rd' | docker login -u odm --password-stdin registry.example.com`,
      '# NodeODM',
      'docker run -d -p 3000:3000 --gpus all registry.example.com/odm/nodeodm:gpu -q 1 --s3_access_key S3KEY --s3_secret_key S3SECRET ' +
        `--s3_endpoint nyc3.digitaloceanspaces.com --s3_bucket odm-results --webhook '${WEBHOOK}' --token ${TOKEN}`,
      '',
    ].join('\n'),
  );
  const r = await boot(ud, t);
  assert.equal(r.exitCode, 0, r.output);
  assert.deepEqual(
    r.calls.map((c) => c.tool),
    ['fallocate', 'chmod', 'mkswap', 'swapon', 'docker', 'docker'],
    'docker is there, so it is not installed',
  );
  assert.deepEqual(r.calls[0]?.args, ['-l', String(Math.round(memTotalKb() * 0.5 * 1024)), '/swapfile']);
  const login = r.calls[4];
  assert.deepEqual(login?.args, ['login', '-u', 'odm', '--password-stdin', 'registry.example.com']);
  assert.equal(login?.stdin, "p@ss w'rd", 'the password arrives on stdin, not in the arguments');
  assert.deepEqual(r.dockerOptions, ['-d', '-p', '3000:3000', '--gpus', 'all']);
  assert.equal(r.image, 'registry.example.com/odm/nodeodm:gpu');
  assert.equal(r.node?.options.token, TOKEN);
  assert.equal(r.node?.options.webhook, WEBHOOK);
  assert.equal(r.node?.options.maxParallelTasks, 1);
  assert.deepEqual(r.node?.options.s3, { endpoint: 'nyc3.digitaloceanspaces.com', bucket: 'odm-results', accessKey: 'S3KEY', secretKey: 'S3SECRET', acl: '' });
});

test('cloud-init for Hetzner: the defaults (swap equal to RAM, no registry), and a webhook with shell metacharacters arrives intact', async (t) => {
  const hostile = "https://x.example/commit?token=a&b=$(touch /tmp/pwned)`id`';reboot;'";
  const ud = userDataFor({ provider: 'hetzner', apiToken: 'hz', s3: S3 }, hostile);
  assert.equal(
    ud,
    [
      ...HEAD,
      ...swap('1'),
      ...DOCKER,
      '# NodeODM',
      'docker run -d -p 3000:3000 opendronemap/nodeodm -q 1 --s3_access_key S3KEY --s3_secret_key S3SECRET ' +
        `--s3_endpoint nyc3.digitaloceanspaces.com --s3_bucket odm-results --webhook 'https://x.example/commit?token=a&b=$(touch /tmp/pwned)\`id\`'\\'';reboot;'\\''' --token ${TOKEN}`,
      '',
    ].join('\n'),
  );
  const r = await boot(ud, t);
  assert.equal(r.exitCode, 0, r.output);
  assert.equal(r.node?.options.webhook, hostile, 'one argument, nothing expanded or run');
  assert.ok(!r.calls.some((c) => c.tool === 'touch' || c.args.includes('reboot')));
});

test('cloud-init for Scaleway: no swap with addSwap 0, Docker installed from engineInstallUrl (its docker-machine quotes removed) when missing', async (t) => {
  const ud = userDataFor({ provider: 'scaleway', secretToken: 'scw', organization: 'org-1', s3: { ...S3, ignoreSSL: true }, addSwap: 0, engineInstallUrl: '"https://releases.example.com/docker-install.sh"' });
  assert.equal(
    ud,
    [
      ...HEAD,
      '# docker',
      'if ! command -v docker >/dev/null 2>&1; then',
      '  curl -fsSL -o /root/install-docker.sh https://releases.example.com/docker-install.sh',
      '  sh /root/install-docker.sh',
      'fi',
      '# NodeODM',
      'docker run -d -p 3000:3000 opendronemap/nodeodm -q 1 --s3_access_key S3KEY --s3_secret_key S3SECRET ' +
        `--s3_endpoint nyc3.digitaloceanspaces.com --s3_bucket odm-results --s3_ignore_ssl --webhook '${WEBHOOK}' --token ${TOKEN}`,
      '',
    ].join('\n'),
  );
  const r = await bootUserData(ud, '127.0.0.1', { dockerMissing: true });
  t.after(async () => {
    await r.node?.close();
  });
  assert.equal(r.exitCode, 0, r.output);
  assert.deepEqual(
    r.calls.map((c) => [c.tool, ...c.args].join(' ')).slice(0, 2),
    ['curl -fsSL -o /root/install-docker.sh https://releases.example.com/docker-install.sh', 'sh /root/install-docker.sh'],
  );
  assert.ok(!r.calls.some((c) => c.tool === 'fallocate' || c.tool === 'swapon'));
  assert.ok(r.nodeFlags.includes('--s3_ignore_ssl'));
  assert.ok(r.node, 'NodeODM started with the Docker just installed');
});

test('cloud-init for AWS: nodeSetupCmd first, the data dir mount, S3 keys from the AWS credentials and the public-read ACL', async (t) => {
  const ud = userDataFor({
    provider: 'aws',
    accessKey: 'AKIAEXAMPLE',
    secretKey: 'awsSecret',
    securityGroup: 'sg-0123',
    ami: 'ami-0123',
    s3: { endpoint: 's3.us-west-2.amazonaws.com', bucket: 'odm-aws' },
    nodeSetupCmd: 'chmod 755 /mnt',
    dockerDataDirMountPath: '/mnt/odm data',
  });
  assert.equal(
    ud,
    [
      ...HEAD,
      '# nodeSetupCmd',
      '(',
      'chmod 755 /mnt',
      ')',
      ...swap('1'),
      ...DOCKER,
      '# NodeODM',
      "docker run -d -p 3000:3000 --mount 'type=bind,source=/mnt/odm data,target=/var/www/data' opendronemap/nodeodm -q 1 " +
        '--s3_access_key AKIAEXAMPLE --s3_secret_key awsSecret --s3_endpoint s3.us-west-2.amazonaws.com --s3_bucket odm-aws ' +
        `--s3_acl public-read --webhook '${WEBHOOK}' --token ${TOKEN}`,
      '',
    ].join('\n'),
  );
  const r = await boot(ud, t);
  assert.equal(r.exitCode, 0, r.output);
  assert.deepEqual(r.calls[0], { tool: 'chmod', args: ['755', '/mnt'] });
  assert.deepEqual(r.dockerOptions, ['-d', '-p', '3000:3000', '--mount', 'type=bind,source=/mnt/odm data,target=/var/www/data']);
  assert.equal(r.node?.options.s3?.acl, 'public-read');
  assert.equal(r.node?.options.s3?.accessKey, 'AKIAEXAMPLE');
});

test('cloud-init: a failing step stops the script before NodeODM starts (set -e), so the machine never looks ready', async (t) => {
  const ud = userDataFor({ provider: 'hetzner', apiToken: 'hz', s3: S3 });
  const r = await bootUserData(ud, '127.0.0.1', { failTools: ['mkswap'] });
  t.after(async () => {
    await r.node?.close();
  });
  assert.notEqual(r.exitCode, 0);
  assert.equal(r.node, null);
  assert.ok(!r.calls.some((c) => c.tool === 'docker'));
});
