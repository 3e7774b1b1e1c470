import { normalizeHostname } from '../core';

/**
 * A list of host names (--admin-web-hosts): "a,b" (flags, files) or ["a", "b"] (files), each a DNS name or an IP
 * literal, or "*"; "" is an empty list. Lower case and frozen; null when anything is not a host name.
 */
export function parseHostList(v: unknown): readonly string[] | null {
  const items = typeof v === 'string' ? v.split(',') : Array.isArray(v) ? (v as unknown[]) : null;
  if (items === null) return null;
  const names: string[] = [];
  for (const item of items) {
    if (typeof item !== 'string') return null;
    const name = item.trim();
    if (name === '') continue;
    const normal = name === '*' ? name : normalizeHostname(name);
    if (normal === null) return null;
    names.push(normal.toLowerCase());
  }
  return Object.freeze(names);
}
