// Pure formatting helpers (no DOM).

export const STATUS_NAMES = { 10: 'QUEUED', 20: 'RUNNING', 30: 'FAILED', 40: 'COMPLETED', 50: 'CANCELED' };

/** "QUEUED" ... "CANCELED" from a NodeODM status code; "UNKNOWN" when the node could not be asked. */
export function statusName(code) {
  return (code !== null && code !== undefined && STATUS_NAMES[code]) || 'UNKNOWN';
}

/** A task in one of these states can still be canceled. */
export function isActive(code) {
  return code === 10 || code === 20 || code === null || code === undefined;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Human-readable size, 1024 base: 1536 → "1.5 KiB". */
export function bytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) return '?';
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${UNITS[i]}`;
}

/** RAM cell: "37%" and its tooltip, or "?" when the node did not report its memory. */
export function ram(info) {
  const total = info?.totalMemory;
  const avail = info?.availableMemory;
  if (typeof total !== 'number' || typeof avail !== 'number' || total <= 0) return { text: '?', title: 'Unknown' };
  return {
    text: `${Math.round((avail / total) * 100)}%`,
    title: `${bytes(avail)} available of ${bytes(total)}`,
  };
}

/** A value of the node list that may be "?" or missing. */
export function orUnknown(v) {
  return v === null || v === undefined || v === '' ? '?' : String(v);
}

const pad = (n) => String(n).padStart(2, '0');

/** "2024-05-01 13:04:05" in local time, or "–". */
export function dateTime(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '–';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Seconds as "1h 30m" / "45s"; negative means no limit. */
export function duration(sec) {
  if (typeof sec !== 'number' || !Number.isFinite(sec)) return '?';
  if (sec < 0) return 'unlimited';
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = Math.floor(sec % 60);
  if (h > 0) return m > 0 ? `${h}h ${m}m` : `${h}h`;
  if (m > 0) return s > 0 ? `${m}m ${s}s` : `${m}m`;
  return `${s}s`;
}

/** A count that may be negative for "no limit". */
export function limit(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '?';
  return n < 0 ? 'unlimited' : String(n);
}

/** "1–50 of 1234" (en dash), "0 of 0" when empty. */
export function pageRange(offset, count, total) {
  if (total === 0 || count === 0) return `0 of ${total}`;
  return `${offset + 1}–${offset + count} of ${total}`;
}

/** Progress in percent, clamped, or null. */
export function percent(p) {
  if (typeof p !== 'number' || !Number.isFinite(p)) return null;
  return Math.max(0, Math.min(100, p));
}
