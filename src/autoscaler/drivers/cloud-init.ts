import type { AsrConfig } from '../asr-config';
import type { S3Settings } from '../s3';
import { command, quote } from '../shell';

/** Everything a new machine needs to run its NodeODM, given to it as cloud-init user data. */
export interface CloudInitParams {
  dockerImage: string;
  dockerGpu: boolean;
  /** Swap as a factor of the machine's RAM (0 = none), as the original's `addSwap`. */
  addSwap: number;
  /** A private registry to log in to first; null = none. */
  registry: { url: string; username: string; password: string } | null;
  /** Docker's install script, used when the image has no Docker (`engineInstallUrl`, default get.docker.com). */
  dockerInstallUrl: string;
  /** Shell run first, as root (AWS `nodeSetupCmd`; trusted configuration). '' = none. */
  setupCommand: string;
  /** Host directory bind-mounted as NodeODM's data directory (AWS `dockerDataDirMountPath`). '' = none. */
  dataDirMountPath: string;
  /** Port NodeODM is published on. */
  servicePort: number;
  s3: S3Settings;
  /** The token the new NodeODM requires (random per machine). */
  nodeToken: string;
  /** Where NodeODM posts a task's info when it ends (carries the machine's secret). */
  webhookUrl: string;
}

export const DEFAULT_DOCKER_INSTALL_URL = 'https://get.docker.com';

/**
 * The user data of a machine: a POSIX shell script that cloud-init runs once, as root, at first boot. It adds swap,
 * installs Docker when the image lacks it, logs in to the registry, and starts NodeODM with the same flags the
 * docker-machine path gives it over ssh (SPEC §8.5, §8.7 step 3, §8.8): `-q 1`, the S3 flags, the webhook and the
 * node token. Every value is shell-quoted; the registry password goes through stdin, not docker's arguments.
 * The script holds secrets (S3 keys, node token, registry password): it is never logged.
 */
export function renderUserData(p: CloudInitParams): string {
  if (!Number.isFinite(p.addSwap) || p.addSwap < 0) throw new Error('Invalid config key addSwap: must be a number >= 0');
  const lines: string[] = [
    '#!/bin/sh',
    '# ClusterODM machine setup: run once by cloud-init, as root, at first boot.',
    'set -eu',
  ];
  if (p.setupCommand.trim() !== '') {
    lines.push('# nodeSetupCmd', '(', p.setupCommand, ')');
  }
  if (p.addSwap > 0) {
    // MemTotal is in kB; the swap file is addSwap times the RAM, as the original's.
    lines.push(
      '# swap',
      `swap_bytes=$(awk -v factor=${quote(String(p.addSwap))} '/MemTotal/ {printf "%.0f", $2 * factor * 1024}' /proc/meminfo)`,
      'fallocate -l "$swap_bytes" /swapfile',
      'chmod 600 /swapfile',
      'mkswap /swapfile',
      'swapon /swapfile',
    );
  }
  lines.push(
    '# docker',
    'if ! command -v docker >/dev/null 2>&1; then',
    `  curl -fsSL -o /root/install-docker.sh ${quote(p.dockerInstallUrl || DEFAULT_DOCKER_INSTALL_URL)}`,
    '  sh /root/install-docker.sh',
    'fi',
  );
  if (p.registry && p.registry.url !== '') {
    lines.push(
      '# registry',
      `printf '%s' ${quote(p.registry.password)} | docker login -u ${quote(p.registry.username)} --password-stdin ${quote(p.registry.url)}`,
    );
  }
  const words: string[] = ['docker', 'run', '-d', '-p', `${p.servicePort}:3000`];
  if (p.dockerGpu) words.push('--gpus', 'all');
  if (p.dataDirMountPath !== '') words.push('--mount', `type=bind,source=${p.dataDirMountPath},target=/var/www/data`);
  words.push(p.dockerImage, '-q', '1');
  words.push('--s3_access_key', p.s3.accessKey, '--s3_secret_key', p.s3.secretKey, '--s3_endpoint', p.s3.endpoint, '--s3_bucket', p.s3.bucket);
  if (p.s3.ignoreSSL) words.push('--s3_ignore_ssl');
  if (p.s3.acl) words.push('--s3_acl', p.s3.acl);
  words.push('--webhook', p.webhookUrl, '--token', p.nodeToken);
  lines.push('# NodeODM', command(words), '');
  return lines.join('\n');
}

/** The configuration's part of the cloud-init parameters (SPEC §8.7–8.10 keys); the caller adds token and webhook. */
export function cloudInitSettings(config: AsrConfig, provider: string): Omit<CloudInitParams, 'nodeToken' | 'webhookUrl'> {
  const aws = provider === 'aws';
  const url = config.string('dockerRegistry.url');
  // docker-machine embedded engineInstallUrl in a shell command, so the docs quoted it as "\"https://…\"".
  const install = config.string('engineInstallUrl').replace(/^"(.*)"$/, '$1');
  return {
    dockerImage: config.string('dockerImage', 'opendronemap/nodeodm'),
    dockerGpu: config.boolean('dockerGpu', false),
    addSwap: config.number('addSwap', 1),
    registry: url ? { url, username: config.string('dockerRegistry.username'), password: config.string('dockerRegistry.password') } : null,
    dockerInstallUrl: install || DEFAULT_DOCKER_INSTALL_URL,
    setupCommand: aws ? config.string('nodeSetupCmd') : '',
    // The original read `dataDirMountPath` while documenting `dockerDataDirMountPath`; both work here.
    dataDirMountPath: aws ? config.string('dockerDataDirMountPath') || config.string('dataDirMountPath') : '',
    servicePort: 3000,
    s3: {
      // AWS takes the S3 keys from its top-level credentials unless `s3` has its own.
      accessKey: config.string('s3.accessKey') || (aws ? config.string('accessKey') : ''),
      secretKey: config.string('s3.secretKey') || (aws ? config.string('secretKey') : ''),
      endpoint: config.string('s3.endpoint'),
      bucket: config.string('s3.bucket'),
      ignoreSSL: config.boolean('s3.ignoreSSL', false),
      acl: config.string('s3.acl', aws ? 'public-read' : ''),
    },
  };
}
