// A tiny DOM builder. Text always goes through text nodes / textContent, never innerHTML,
// so server data (node names, task names) cannot inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Appends children: strings and numbers become text nodes, null/undefined/false are skipped, arrays are flattened. */
function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

function applyProps(el, props) {
  if (!props) return;
  for (const [k, v] of Object.entries(props)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k.startsWith('on')) throw new Error(`use {on: {...}} for ${k}`);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

/** h('td', {class: 'num'}, 'text', child, ...) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyProps(el, props);
  append(el, children);
  return el;
}

/** Replaces all children of `el`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Shorthand for document.getElementById that fails loudly when the page and the script disagree. */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el;
}

/**
 * Keyed update of a table body: rows whose signature did not change are kept as they are (no re-creation), changed
 * ones are rebuilt, missing ones dropped, and the order fixed with as few moves as possible. Cheap for 500 rows
 * refreshed every few seconds, and it keeps the keyboard focus on a button across refreshes when it can.
 *
 * @param {HTMLElement} tbody
 * @param {Map<string, {sig: string, el: HTMLElement}>} cache  kept by the caller between calls
 * @param {Array<{key: string, sig: string, build: () => HTMLElement}>} rows
 */
export function syncRows(tbody, cache, rows) {
  const active = document.activeElement;
  const focusKey = active instanceof HTMLElement && tbody.contains(active) ? active.dataset.focusKey : undefined;
  const seen = new Set();
  const wanted = [];
  for (const row of rows) {
    seen.add(row.key);
    let entry = cache.get(row.key);
    if (!entry || entry.sig !== row.sig) {
      const el = row.build();
      el.dataset.key = row.key;
      if (entry) entry.el.replaceWith(el);
      entry = { sig: row.sig, el };
      cache.set(row.key, entry);
    }
    wanted.push(entry.el);
  }
  for (const [key, entry] of cache) {
    if (!seen.has(key)) {
      entry.el.remove();
      cache.delete(key);
    }
  }
  // Anything else in the body (an "empty" placeholder row) goes.
  for (const child of [...tbody.children]) if (!child.dataset.key) child.remove();
  let cursor = tbody.firstElementChild;
  for (const el of wanted) {
    if (cursor === el) cursor = cursor.nextElementSibling;
    else tbody.insertBefore(el, cursor);
  }
  if (focusKey && !tbody.contains(document.activeElement)) {
    const target = tbody.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
    if (target instanceof HTMLElement && !target.hasAttribute('disabled')) target.focus();
  }
}

/** A single full-width row with a message ("No nodes"), replacing the body. */
export function placeholderRow(tbody, cache, columns, message) {
  cache.clear();
  tbody.replaceChildren(h('tr', { class: 'empty' }, h('td', { colspan: columns }, message)));
}
