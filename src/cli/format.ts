import type { ClusterNode } from '../nodes';

/** Every line the CLI writes ends with CRLF (as the original). */
export const CRLF = '\r\n';
export const OK = `OK${CRLF}`;
export const FAIL = `FAIL${CRLF}`;
export const INVALID = `INVALID${CRLF}`;

export const PROMPT_GUEST = '$> ';
export const PROMPT_ADMIN = '#> ';

/** Lines, each followed by CRLF. */
export function lines(...text: string[]): string {
  return text.map((l) => `${l}${CRLF}`).join('');
}

/** `JSON.stringify(x, null, 2)` plus CRLF; the inner newlines stay bare `\n`, as the original. */
export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2) ?? 'null'}${CRLF}`;
}

/** An array answer (TASK OUTPUT) printed as its elements joined with CRLF, then CRLF. */
export function textLines(items: readonly unknown[]): string {
  return `${items.map((v) => (typeof v === 'string' ? v : JSON.stringify(v) ?? '')).join(CRLF)}${CRLF}`;
}

/** One NODE LIST line: `1) host:port [online] [0/1] <engine: odm ?> <API: 2.2.4> [L,A]`, without a line ending. */
export function nodeLine(index: number, node: ClusterNode, now: number): string {
  const status = node.isOnline(now) ? 'online' : 'offline';
  const flags = [node.isLocked() ? 'L' : '', node.isAutoSpawned() ? 'A' : ''].filter((f) => f !== '');
  return (
    `${index}) ${node.name} [${status}] [${node.getTaskQueueCount()}/${node.getMaxParallelTasks()}] ` +
    `<engine: ${node.getEngineInfo()}> <API: ${node.getVersion()}>` +
    (flags.length > 0 ? ` [${flags.join(',')}]` : '')
  );
}

/** A whole number written in decimal digits (no sign, no exponent), or null. */
export function parseCount(s: string): number | null {
  if (!/^\d+$/.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}

/** An integer that may be negative (TASK OUTPUT's line offset counts from the end when negative), or null. */
export function parseOffset(s: string): number | null {
  if (!/^-?\d+$/.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}
