import { isIPv4, isIPv6 } from 'node:net';

/** Longest DNS name (RFC 1035), trailing dot excluded. */
const MAX_NAME_LENGTH = 253;
/**
 * One DNS label: letters, digits, inner hyphens, at most 63 characters. Underscores are allowed too: Docker
 * and docker-compose names (`project_node_1`) resolve on their networks although DNS proper forbids them.
 */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/i;
/** A last label that URL parsers read as a number, so the whole name as an IPv4 address (`127.1`, `0x7f.1`). */
const NUMERIC_LABEL = /^(?:\d+|0x[0-9a-f]*)$/i;

/** A strict IPv4 dotted quad (no leading zeros) or an IPv6 address without zone and without brackets. */
export function isIpLiteral(s: string): boolean {
  return isIPv4(s) || (isIPv6(s) && !s.includes('%'));
}

/** A DNS name (one trailing dot allowed) whose last label is not a number. */
function isDnsName(s: string): boolean {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name === '' || name.length > MAX_NAME_LENGTH) return false;
  const labels = name.split('.');
  if (!labels.every((l) => LABEL.test(l))) return false;
  return !NUMERIC_LABEL.test(labels[labels.length - 1] ?? '');
}

/**
 * The one hostname check of the program (node hostnames typed in the admin CLI or web, found in nodes.json, names
 * in --admin-web-hosts): a DNS name or an IP literal, IPv6 with or without brackets. Returns the hostname as it
 * is stored (IPv6 without brackets), or null for anything else: URLs, paths, ports, user info, quotes, markup,
 * control characters, numeric shorthands such as `127.1` or `0x7f.1` (which URL parsers turn into another address).
 */
export function normalizeHostname(s: string): string | null {
  if (s.startsWith('[') && s.endsWith(']')) {
    const inner = s.slice(1, -1);
    return isIPv6(inner) && !inner.includes('%') ? inner : null;
  }
  return isIpLiteral(s) || isDnsName(s) ? s : null;
}

/** True when `s` is a valid hostname in its stored form (what ClusterNode and the health poller check). */
export function isValidHostname(s: string): boolean {
  return normalizeHostname(s) === s;
}
