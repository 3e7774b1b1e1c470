import { h, byId } from './dom.js';

const MAX_ALERTS = 5;

/** The alert bar: API errors are always shown here, never swallowed. Repeats of one message are counted. */
export class Alerts {
  constructor(container = byId('alerts')) {
    this.container = container;
    /** message → {el, count, countEl} */
    this.open = new Map();
  }

  error(err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(err);
    const existing = this.open.get(message);
    if (existing) {
      existing.count++;
      existing.countEl.textContent = ` (×${existing.count})`;
      this.container.appendChild(existing.el); // newest last
      return;
    }
    const countEl = h('span', { class: 'alert-count' });
    const el = h(
      'div',
      { class: 'alert', role: 'alert' },
      h('span', { class: 'alert-text' }, message),
      countEl,
      h('button', { type: 'button', class: 'alert-close', 'aria-label': 'Dismiss message', on: { click: () => this.dismiss(message) } }, '×'),
    );
    this.open.set(message, { el, count: 1, countEl });
    this.container.appendChild(el);
    while (this.open.size > MAX_ALERTS) this.dismiss(this.open.keys().next().value);
  }

  dismiss(message) {
    const entry = this.open.get(message);
    if (!entry) return;
    entry.el.remove();
    this.open.delete(message);
  }

  clear() {
    for (const message of [...this.open.keys()]) this.dismiss(message);
  }
}
