import { h, byId, syncRows, placeholderRow } from './dom.js';
import { dateTime, isActive, pageRange, percent, statusName } from './format.js';

const COLUMNS = 8;
export const PAGE_SIZE = 50;

/** The tasks table with server-side paging (50 a page) and search. */
export class TasksView {
  /**
   * @param {{onQuery: () => void, onCancel: (task) => void, onRemove: (task) => void}} actions
   */
  constructor(actions) {
    this.actions = actions;
    this.tbody = byId('tasks-body');
    this.range = byId('tasks-range');
    this.prev = byId('tasks-prev');
    this.next = byId('tasks-next');
    this.search = byId('tasks-search');
    this.rows = new Map();
    this.busy = new Set();
    this.query = { offset: 0, limit: PAGE_SIZE, q: '' };
    this.page = null;

    let debounce = null;
    this.search.addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => this.setSearch(this.search.value), 300);
    });
    byId('tasks-search-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearTimeout(debounce);
      this.setSearch(this.search.value);
    });
    this.prev.addEventListener('click', () => this.go(this.query.offset - this.query.limit));
    this.next.addEventListener('click', () => this.go(this.query.offset + this.query.limit));
  }

  setSearch(q) {
    q = q.trim();
    if (q === this.query.q) return;
    this.query = { ...this.query, q, offset: 0 };
    this.actions.onQuery();
  }

  go(offset) {
    this.query = { ...this.query, offset: Math.max(0, offset) };
    this.actions.onQuery();
  }

  setBusy(task, busy) {
    if (busy) this.busy.add(task.uuid);
    else this.busy.delete(task.uuid);
    this.render();
  }

  /** A page answered by GET /r/tasks. Returns false when the page is past the end and an earlier one is needed. */
  update(page) {
    if (page.tasks.length === 0 && page.total > 0 && page.offset > 0) {
      // The last page emptied (tasks removed): step back to the last page that has tasks.
      this.go(Math.floor((page.total - 1) / this.query.limit) * this.query.limit);
      return false;
    }
    this.page = page;
    this.render();
    return true;
  }

  render() {
    const page = this.page;
    if (!page) return;
    this.range.textContent = pageRange(page.offset, page.tasks.length, page.total);
    this.prev.disabled = page.offset <= 0;
    this.next.disabled = page.offset + page.tasks.length >= page.total;
    if (page.tasks.length === 0) {
      placeholderRow(this.tbody, this.rows, COLUMNS, this.query.q ? `No task matches “${this.query.q}”.` : 'No tasks.');
      return;
    }
    syncRows(
      this.tbody,
      this.rows,
      page.tasks.map((task) => {
        const busy = this.busy.has(task.uuid);
        return { key: task.uuid, sig: JSON.stringify([task, busy]), build: () => this.row(task, busy) };
      }),
    );
  }

  row(task, busy) {
    const status = statusName(task.status);
    const p = percent(task.progress);
    const label = task.name || task.uuid;
    return h(
      'tr',
      null,
      h('td', { class: 'uuid' }, h('code', null, task.uuid)),
      h('td', { class: 'task-name' }, task.name || h('span', { class: 'muted' }, '(no name)')),
      h('td', null, task.node ?? '–', task.where === 'local' ? h('span', { class: 'muted' }, ' (local)') : null),
      h(
        'td',
        null,
        h('span', { class: `badge badge-${status.toLowerCase()}` }, status),
        typeof task.ahead === 'number' ? h('span', { class: 'muted queue-pos' }, ` ${task.ahead} ahead`) : null,
      ),
      h(
        'td',
        { class: 'progress-cell' },
        p === null
          ? h('span', { class: 'muted' }, '–')
          : [
              h(
                'div',
                {
                  class: 'progress',
                  role: 'progressbar',
                  'aria-valuemin': 0,
                  'aria-valuemax': 100,
                  'aria-valuenow': Math.round(p),
                  'aria-label': `Progress of ${label}`,
                },
                h('div', { class: 'progress-fill', style: { width: `${p}%` } }),
              ),
              h('span', { class: 'progress-text' }, `${Math.round(p)}%`),
            ],
      ),
      h('td', { class: 'num' }, task.imagesCount ?? '–'),
      h('td', { class: 'date' }, dateTime(task.dateCreated)),
      h(
        'td',
        { class: 'actions' },
        h(
          'button',
          {
            type: 'button',
            class: 'btn btn-small btn-warning',
            'aria-label': `Cancel task ${label}`,
            dataset: { focusKey: `cancel:${task.uuid}` },
            disabled: busy || !isActive(task.status),
            on: { click: () => this.actions.onCancel(task) },
          },
          'Cancel',
        ),
        h(
          'button',
          {
            type: 'button',
            class: 'btn btn-small btn-danger',
            'aria-label': `Remove task ${label}`,
            dataset: { focusKey: `remove:${task.uuid}` },
            disabled: busy,
            on: { click: () => this.actions.onRemove(task) },
          },
          'Remove',
        ),
      ),
    );
  }
}
