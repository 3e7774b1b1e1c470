import { h, byId, syncRows, placeholderRow } from './dom.js';
import { loadChart } from './chart.js';
import { orUnknown, ram } from './format.js';

const COLUMNS = 11;

/** The nodes table. Rows are keyed by host:port and only rebuilt when what they show changed. */
export class NodesView {
  /**
   * @param {{onLock: (node, locked: boolean) => void, onDelete: (node) => void, onChart: (node) => void}} actions
   */
  constructor(actions) {
    this.actions = actions;
    this.tbody = byId('nodes-body');
    this.count = byId('nodes-count');
    this.rows = new Map();
    /** host:port of nodes with an action in flight: their buttons are disabled. */
    this.busy = new Set();
    this.nodes = null;
    this.history = {};
    this.historyAt = Date.now();
  }

  setBusy(node, busy) {
    if (busy) this.busy.add(node.name);
    else this.busy.delete(node.name);
    this.render();
  }

  update(nodes, history) {
    if (nodes) this.nodes = nodes;
    if (history) {
      this.history = history;
      this.historyAt = Date.now();
    }
    this.render();
  }

  render() {
    const nodes = this.nodes;
    if (!nodes) return;
    const online = nodes.filter((n) => n.isOnline).length;
    this.count.textContent = `${nodes.length} node${nodes.length === 1 ? '' : 's'}, ${online} online`;
    if (nodes.length === 0) {
      placeholderRow(this.tbody, this.rows, COLUMNS, 'No nodes yet. Use “Add Node” to add a NodeODM node.');
      return;
    }
    // A sparkline ends at the time its history was fetched. Rows are rebuilt only when their samples change (the
    // daemon samples each node once a minute), not on every refresh, so unchanged rows keep their elements.
    const now = this.historyAt;
    syncRows(
      this.tbody,
      this.rows,
      nodes.map((node) => {
        const samples = this.history[node.name] || [];
        const last = samples[samples.length - 1];
        const busy = this.busy.has(node.name);
        return {
          key: node.name,
          sig: JSON.stringify([node, samples.length, last && last.t, busy]),
          build: () => this.row(node, samples, busy, now),
        };
      }),
    );
  }

  row(node, samples, busy, now) {
    const info = (node.nodeData && node.nodeData.info) || {};
    const mem = ram(info);
    const name = node.name;
    const flags = [];
    if (node.isLocked) flags.push(h('abbr', { class: 'flag flag-locked', title: 'Locked' }, 'L'));
    if (node.isAutoSpawned) flags.push(h('abbr', { class: 'flag flag-auto', title: 'Auto-spawned' }, 'A'));
    return h(
      'tr',
      { class: node.isOnline ? '' : 'offline' },
      h('td', { class: 'num' }, String(node.number)),
      h('td', { class: 'node-name' }, name),
      h('td', null, h('span', { class: `badge ${node.isOnline ? 'badge-online' : 'badge-offline'}` }, node.isOnline ? 'Online' : 'Offline')),
      h('td', { class: 'num' }, `${orUnknown(node.getTaskQueueCount)}/${orUnknown(node.getMaxParallelTasks)}`),
      h('td', null, orUnknown(node.getEngineInfo)),
      h('td', null, orUnknown(node.getVersion)),
      h('td', { class: 'num' }, orUnknown(info.cpuCores)),
      h('td', { class: 'num' }, h('span', { class: 'ram', title: mem.title }, mem.text)),
      h('td', { class: 'flags' }, flags),
      h(
        'td',
        { class: 'load' },
        h(
          'button',
          {
            type: 'button',
            class: 'spark-button',
            'aria-label': `Load chart of ${name}`,
            dataset: { focusKey: `chart:${name}` },
            on: { click: () => this.actions.onChart(node) },
          },
          loadChart(samples, { width: 120, height: 28, now }),
        ),
      ),
      h(
        'td',
        { class: 'actions' },
        h(
          'button',
          {
            type: 'button',
            class: node.isLocked ? 'btn btn-small btn-secondary' : 'btn btn-small btn-warning',
            'aria-label': `${node.isLocked ? 'Unlock' : 'Lock'} node ${name}`,
            dataset: { focusKey: `lock:${name}` },
            disabled: busy,
            on: { click: () => this.actions.onLock(node, !node.isLocked) },
          },
          node.isLocked ? 'UNLOCK' : 'LOCK',
        ),
        h(
          'button',
          {
            type: 'button',
            class: 'btn btn-small btn-danger',
            'aria-label': `Delete node ${name}`,
            dataset: { focusKey: `del:${name}` },
            disabled: busy,
            on: { click: () => this.actions.onDelete(node) },
          },
          'DEL',
        ),
      ),
    );
  }
}
