import { h, byId, replaceChildren } from './dom.js';
import { duration, limit } from './format.js';

/** The autoscaler panel: hidden unless GET /r/asr says enabled. */
export function renderAsr(asr) {
  const panel = byId('asr-panel');
  if (!asr || asr.enabled !== true) {
    panel.hidden = true;
    return;
  }
  const item = (term, value) => h('div', { class: 'stat' }, h('dt', null, term), h('dd', null, value));
  replaceChildren(
    byId('asr-stats'),
    item('Provider', asr.provider ?? '?'),
    item('Pending', asr.pending ?? '?'),
    item('Running', asr.running ?? '?'),
    item('Limit', limit(asr.limit)),
    item('Max runtime', duration(asr.maxRuntime)),
    item('Max upload time', duration(asr.maxUploadTime)),
  );
  // Machines being created, with their current step (creating, setting up, waiting for NodeODM).
  const creating = Array.isArray(asr.creating) ? asr.creating : [];
  replaceChildren(
    byId('asr-creating'),
    creating.map((c) =>
      h('li', null, h('strong', null, c.name), ' (task ', h('code', null, c.uuid), '): ', c.step),
    ),
  );
  byId('asr-creating').hidden = creating.length === 0;
  // Each machine's size, region, age and hourly price (as the cloud's size list said at its creation).
  const machines = Array.isArray(asr.machines) ? asr.machines : [];
  const now = Date.now();
  const money = (v, cur) => (typeof v === 'number' ? `${v.toFixed(4)} ${cur ?? ''}`.trim() : '–');
  replaceChildren(
    byId('asr-machine-rows'),
    machines.map((m) =>
      h(
        'tr',
        null,
        h('td', null, h('code', null, m.name)),
        h('td', null, m.node),
        h('td', null, m.size ?? '–'),
        h('td', null, m.region ?? '–'),
        h('td', { class: 'num' }, m.created > 0 ? duration(Math.max(0, Math.round((now - m.created) / 1000))) : '–'),
        h('td', { class: 'num price' }, money(m.hourlyPrice, m.currency)),
      ),
    ),
  );
  byId('asr-machines').hidden = machines.length === 0;
  if (typeof asr.hourlySpend === 'number') {
    const cur = machines.find((m) => m.currency)?.currency ?? '';
    const max = typeof asr.maxHourlySpend === 'number' && asr.maxHourlySpend >= 0 ? ` of ${money(asr.maxHourlySpend, cur)} max` : '';
    byId('asr-stats').append(item('Spend per hour', `${money(asr.hourlySpend, cur)}${max}`));
  }
  panel.hidden = false;
}
