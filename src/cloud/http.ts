import { errorMessage, type Clock } from '../core';

/** The part of a fetch Response the Lightning client reads. */
export interface FetchResponseLike {
  readonly status: number;
  text(): Promise<string>;
}

export interface FetchInit {
  method: 'POST';
  headers: Record<string, string>;
  body: string;
  signal: AbortSignal;
}

/** The global fetch satisfies this; tests may pass a wrapper that counts or fails requests. */
export type FetchLike = (url: string, init: FetchInit) => Promise<FetchResponseLike>;

export interface JsonReply {
  status: number;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  body: unknown;
}

/**
 * POSTs a JSON payload and reads the whole answer. The timeout runs on the injected clock and also
 * covers reading the body, so a server that sends headers and then stalls cannot hold a caller.
 */
export async function postJson(
  fetchFn: FetchLike,
  clock: Clock,
  url: string,
  payload: unknown,
  timeoutMs: number,
): Promise<JsonReply> {
  const controller = new AbortController();
  const timer = clock.setTimeout(
    () => controller.abort(new Error(`timeout of ${timeoutMs}ms exceeded`)),
    Math.max(1, timeoutMs),
  );
  try {
    const res = await fetchFn(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(payload),
      signal: controller.signal,
    });
    const text = await res.text();
    return { status: res.status, body: parseJsonOrUndefined(text) };
  } finally {
    clock.clearTimeout(timer);
  }
}

function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** fetch reports network problems as "fetch failed" with the real reason in `cause`; show both. */
export function describeRequestError(e: unknown): string {
  const msg = errorMessage(e);
  if (e instanceof Error && e.cause !== undefined) {
    const cause = errorMessage(e.cause);
    if (cause && cause !== msg) return `${msg}: ${cause}`;
  }
  return msg;
}
