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
  panel.hidden = false;
}
