// The admin JSON API (/r/...). Every failure becomes an ApiError with a message fit for the alert bar.

const TIMEOUT_MS = 30000;

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

function describeHttpError(status, text) {
  let detail = '';
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === 'string') detail = body.error;
  } catch {
    // not JSON
  }
  if (status === 401) return 'Not signed in (HTTP 401). Reload the page to sign in again.';
  if (status === 403 && !detail) return 'Request refused (HTTP 403)';
  return detail ? `${detail} (HTTP ${status})` : `HTTP ${status}`;
}

async function request(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET') {
    // The server refuses state changes that are not application/json (its CSRF guard).
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  if (typeof AbortSignal.timeout === 'function') init.signal = AbortSignal.timeout(TIMEOUT_MS);
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    const why = e && e.name === 'TimeoutError' ? 'timed out' : 'cannot reach the server';
    throw new ApiError(`${method} ${path}: ${why}`);
  }
  const text = await res.text();
  if (!res.ok) throw new ApiError(`${method} ${path}: ${describeHttpError(res.status, text)}`, res.status);
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new ApiError(`${method} ${path}: the answer is not JSON`, res.status);
  }
  // Some routes answer 200 with {"error": "..."} (the original's convention).
  if (data && typeof data === 'object' && !Array.isArray(data) && typeof data.error === 'string') {
    throw new ApiError(data.error, res.status);
  }
  return data;
}

/** Body naming a node by address (stable), never by row number (racy). */
function address(node) {
  if (node.nodeData && typeof node.nodeData.hostname === 'string') return { hostname: node.nodeData.hostname, port: node.nodeData.port };
  const i = node.name.lastIndexOf(':'); // "host:port"
  return { hostname: node.name.slice(0, i), port: Number(node.name.slice(i + 1)) };
}

/** lock/unlock/delete answer true or false. */
function expectTrue(what) {
  return (ok) => {
    if (ok !== true) throw new ApiError(`${what} failed: the node is unknown (the list may have changed) or could not be saved`);
    return true;
  };
}

/** Task actions answer the node's reply, e.g. {"success": true}. */
function expectSuccess(what) {
  return (reply) => {
    if (!reply || reply.success !== true) throw new ApiError(`${what} failed: unexpected answer ${JSON.stringify(reply)}`);
    return reply;
  };
}

export const api = {
  info: () => request('GET', '/r/info'),
  nodes: () => request('GET', '/r/node/list'),
  history: () => request('GET', '/r/node/history'),
  asr: () => request('GET', '/r/asr'),
  addNode: (hostname, port, token) =>
    request('POST', '/r/node/add', token ? { hostname, port, token } : { hostname, port }).then((r) => {
      if (!r || r.success !== true) throw new ApiError(`Cannot add node ${hostname}:${port}`);
      return r;
    }),
  setLocked: (node, locked) =>
    request('POST', locked ? '/r/node/lock' : '/r/node/unlock', address(node)).then(
      expectTrue(`${locked ? 'Locking' : 'Unlocking'} ${node.name}`),
    ),
  deleteNode: (node) => request('DELETE', '/r/node', address(node)).then(expectTrue(`Deleting ${node.name}`)),
  tasks: ({ offset, limit, q }) => {
    const qs = new URLSearchParams({ offset: String(offset), limit: String(limit) });
    if (q) qs.set('q', q);
    return request('GET', `/r/tasks?${qs}`);
  },
  cancelTask: (uuid) => request('POST', '/r/task/cancel', { uuid }).then(expectSuccess(`Canceling task ${uuid}`)),
  removeTask: (uuid) => request('POST', '/r/task/remove', { uuid }).then(expectSuccess(`Removing task ${uuid}`)),
};
