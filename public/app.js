// ClusterODM admin page. Plain ES modules, no build step, no framework; see js/ for the pieces.
import { api, ApiError } from './js/api.js';
import { Alerts } from './js/alerts.js';
import { byId } from './js/dom.js';
import { confirmDialog, closeOnBackdrop, setupAddNodeDialog, setupChartDialog } from './js/dialogs.js';
import { NodesView } from './js/nodes.js';
import { TasksView } from './js/tasks.js';
import { renderAsr } from './js/asr.js';

const REFRESH_MS = 5000;
/** The load history is sampled once a minute and can be large with many nodes: fetched at most this often. */
const HISTORY_MS = 30000;
const AUTO_REFRESH_KEY = 'clusterodm.autoRefresh';

const alerts = new Alerts();
const chartDialog = setupChartDialog();
closeOnBackdrop(byId('confirm-dialog'));

/** Runs an action, shows its error in the alert bar; resolves to true when it succeeded. */
async function attempt(fn) {
  try {
    await fn();
    return true;
  } catch (e) {
    alerts.error(e);
    return false;
  }
}

// ---------------------------------------------------------------------------------------------- nodes

const nodesView = new NodesView({
  async onLock(node, locked) {
    nodesView.setBusy(node, true);
    await attempt(() => api.setLocked(node, locked));
    nodesView.setBusy(node, false);
    await refreshNodes();
  },
  async onDelete(node) {
    const ok = await confirmDialog({
      title: 'Delete node',
      message: `Do you really want to delete the node ${node.name}? Its task routes are forgotten${node.isAutoSpawned ? ' and its machine is destroyed' : ''}.`,
      action: 'Delete',
    });
    if (!ok) return;
    nodesView.setBusy(node, true);
    await attempt(() => api.deleteNode(node));
    nodesView.setBusy(node, false);
    await refreshNodes({ history: true });
  },
  onChart(node) {
    chartDialog.open(node.name, nodesView.history[node.name] || []);
    void refreshNodes({ history: true });
  },
});

const addNode = setupAddNodeDialog(async (hostname, port, token) => {
  try {
    await api.addNode(hostname, port, token);
  } catch (e) {
    if (e instanceof ApiError && e.message === 'Invalid') {
      throw new ApiError(`Cannot add ${hostname}:${port}: the address is invalid or the node is already in the list.`);
    }
    throw e;
  }
  await refreshNodes({ history: true });
});
byId('add-node').addEventListener('click', () => addNode.open());
byId('nodes-refresh').addEventListener('click', () => void refreshNodes({ history: true }));

let nodesSeq = 0;
let nodesPending = 0;
let historyAt = 0;

/** Reloads the node list (and the load history when it is due); stale answers are dropped. */
async function refreshNodes({ history = false } = {}) {
  const seq = ++nodesSeq;
  const withHistory = history || Date.now() - historyAt >= HISTORY_MS;
  nodesPending++;
  try {
    const [list, hist] = await Promise.allSettled([api.nodes(), withHistory ? api.history() : Promise.resolve(null)]);
    if (seq !== nodesSeq) return;
    if (list.status === 'rejected') alerts.error(list.reason);
    if (hist.status === 'rejected') alerts.error(hist.reason);
    else if (hist.value) historyAt = Date.now();
    const nodes = list.status === 'fulfilled' && Array.isArray(list.value) ? list.value : null;
    if (list.status === 'fulfilled' && !nodes) alerts.error(new Error('GET /r/node/list: unexpected answer'));
    const historyMap = hist.status === 'fulfilled' && hist.value && typeof hist.value === 'object' ? hist.value : null;
    nodesView.update(nodes, historyMap);
    if (historyMap) chartDialog.update(historyMap);
    if (nodes) stamp();
  } finally {
    nodesPending--;
  }
}

// ---------------------------------------------------------------------------------------------- tasks

const tasksView = new TasksView({
  onQuery: () => void refreshTasks(),
  async onCancel(task) {
    tasksView.setBusy(task, true);
    await attempt(() => api.cancelTask(task.uuid));
    tasksView.setBusy(task, false);
    await refreshTasks();
  },
  async onRemove(task) {
    const ok = await confirmDialog({
      title: 'Remove task',
      message: `Do you really want to remove the task ${task.name ? `“${task.name}” (${task.uuid})` : task.uuid}? Its results are deleted from the node.`,
      action: 'Remove',
    });
    if (!ok) return;
    tasksView.setBusy(task, true);
    await attempt(() => api.removeTask(task.uuid));
    tasksView.setBusy(task, false);
    await refreshTasks();
  },
});
byId('tasks-refresh').addEventListener('click', () => void refreshTasks());

let tasksSeq = 0;
let tasksPending = 0;

async function refreshTasks() {
  const seq = ++tasksSeq;
  tasksPending++;
  try {
    const page = await api.tasks(tasksView.query);
    if (seq !== tasksSeq) return;
    if (!page || !Array.isArray(page.tasks) || typeof page.total !== 'number') throw new ApiError('GET /r/tasks: unexpected answer');
    if (tasksView.update(page)) stamp();
  } catch (e) {
    if (seq === tasksSeq) alerts.error(e);
  } finally {
    tasksPending--;
  }
}

// ---------------------------------------------------------------------------------------------- autoscaler

async function refreshAsr() {
  try {
    renderAsr(await api.asr());
  } catch (e) {
    alerts.error(e);
  }
}

// ---------------------------------------------------------------------------------------------- tabs

const tabs = {
  nodes: { tab: byId('tab-nodes'), panel: byId('nodes-panel'), refresh: () => refreshNodes() },
  tasks: { tab: byId('tab-tasks'), panel: byId('tasks-panel'), refresh: () => refreshTasks() },
};
let view = 'nodes';

function show(name, { focus = false } = {}) {
  if (!tabs[name]) name = 'nodes';
  view = name;
  for (const [key, t] of Object.entries(tabs)) {
    const on = key === name;
    t.tab.setAttribute('aria-selected', String(on));
    t.tab.tabIndex = on ? 0 : -1;
    t.panel.hidden = !on;
  }
  if (focus) tabs[name].tab.focus();
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
  void tabs[name].refresh();
}

for (const [name, t] of Object.entries(tabs)) {
  t.tab.addEventListener('click', () => show(name));
  t.tab.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
    ev.preventDefault();
    show(name === 'nodes' ? 'tasks' : 'nodes', { focus: true });
  });
}
window.addEventListener('hashchange', () => show(location.hash.slice(1)));

// ---------------------------------------------------------------------------------------------- auto refresh

const autoButton = byId('auto-refresh');
let timer = null;

function tick() {
  if (document.hidden) return;
  if (view === 'nodes' && nodesPending === 0) void refreshNodes();
  if (view === 'tasks' && tasksPending === 0) void refreshTasks();
  void refreshAsr();
}

function setAutoRefresh(on) {
  clearInterval(timer);
  timer = on ? setInterval(tick, REFRESH_MS) : null;
  autoButton.textContent = on ? 'Disable Auto Refresh' : 'Enable Auto Refresh';
  autoButton.setAttribute('aria-pressed', String(on));
  try {
    localStorage.setItem(AUTO_REFRESH_KEY, on ? '1' : '0');
  } catch {
    // storage unavailable: the setting just is not remembered
  }
}
autoButton.addEventListener('click', () => setAutoRefresh(timer === null));

const updated = byId('last-updated');
function stamp() {
  updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

// ---------------------------------------------------------------------------------------------- start

async function loadInfo() {
  try {
    const info = await api.info();
    byId('app-name').textContent = String(info.name ?? 'ClusterODM');
    byId('app-version').textContent = String(info.version ?? '');
  } catch (e) {
    alerts.error(e);
  }
}

let remembered = false;
try {
  remembered = localStorage.getItem(AUTO_REFRESH_KEY) === '1';
} catch {
  // ignore
}
setAutoRefresh(remembered);
void loadInfo();
void refreshAsr();
show(location.hash.slice(1) || 'nodes');
document.body.dataset.ready = 'true';
