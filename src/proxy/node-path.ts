import type { NodeEndpoint } from '../nodeodm';

/**
 * The client's path and query for the node: every `token` parameter (the user's) dropped and the node's own
 * token appended (if it has one). Works on the query string as sent, without URLSearchParams: the other
 * parameters pass through byte for byte, and the hot path of proxied task routes allocates little.
 */
export function nodePath(url: URL, node: NodeEndpoint): string {
  const pathname = url.pathname;
  const search = url.search;
  let kept = '';
  if (search.length > 1) {
    let start = 1;
    while (start <= search.length) {
      let end = search.indexOf('&', start);
      if (end < 0) end = search.length;
      if (end > start) {
        const part = search.slice(start, end);
        if (!isTokenParam(part)) kept = kept ? `${kept}&${part}` : part;
      }
      start = end + 1;
    }
  }
  if (node.token) {
    const t = `token=${encodeURIComponent(node.token)}`;
    kept = kept ? `${kept}&${t}` : t;
  }
  return kept ? `${pathname}?${kept}` : pathname;
}

function isTokenParam(part: string): boolean {
  const eq = part.indexOf('=');
  const key = eq < 0 ? part : part.slice(0, eq);
  if (key === 'token') return true;
  if (!key.includes('%') && !key.includes('+')) return false;
  // An encoded spelling (`tok%65n`) is the same parameter to the node's query parser.
  try {
    return decodeURIComponent(key.replace(/\+/g, ' ')) === 'token';
  } catch {
    return false;
  }
}
