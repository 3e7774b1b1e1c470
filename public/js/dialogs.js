import { byId, replaceChildren } from './dom.js';
import { loadChart, describeLoad } from './chart.js';

/**
 * Asks for confirmation with the page's <dialog id="confirm-dialog">. Resolves true when the action button was
 * pressed, false on Cancel, Escape or a click on the backdrop. The dialog is always closed when this resolves.
 */
export function confirmDialog({ title, message, action }) {
  const dialog = byId('confirm-dialog');
  byId('confirm-title').textContent = title;
  byId('confirm-message').textContent = message;
  const ok = byId('confirm-ok');
  ok.textContent = action;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    byId('confirm-cancel').focus(); // the safe choice first
  });
}

/** Closes a dialog when its backdrop (the dialog element itself, outside its content box) is clicked. */
export function closeOnBackdrop(dialog) {
  dialog.addEventListener('click', (ev) => {
    if (ev.target !== dialog) return;
    const r = dialog.getBoundingClientRect();
    const inside = ev.clientX >= r.left && ev.clientX <= r.right && ev.clientY >= r.top && ev.clientY <= r.bottom;
    if (!inside) dialog.close();
  });
}

/** The "Add Node" dialog. `submit(hostname, port, token)` rejects with the error to show in the dialog. */
export function setupAddNodeDialog(submit) {
  const dialog = byId('add-node-dialog');
  const form = byId('add-node-form');
  const error = byId('add-node-error');
  const save = byId('add-node-save');
  closeOnBackdrop(dialog);
  byId('add-node-cancel').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    form.reset();
    error.hidden = true;
    error.textContent = '';
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const hostname = form.elements.hostname.value.trim();
    const port = Number(form.elements.port.value);
    const token = form.elements.token.value;
    if (!hostname || !Number.isInteger(port) || port < 1 || port > 65535) {
      error.textContent = 'Enter a hostname and a port number between 1 and 65535.';
      error.hidden = false;
      return;
    }
    save.disabled = true;
    error.hidden = true;
    try {
      await submit(hostname, port, token);
      dialog.close();
    } catch (e) {
      error.textContent = e instanceof Error ? e.message : String(e);
      error.hidden = false;
    } finally {
      save.disabled = false;
    }
  });
  return {
    open() {
      dialog.showModal();
      form.elements.hostname.focus();
    },
  };
}

/** The larger load chart of one node. */
export function setupChartDialog() {
  const dialog = byId('chart-dialog');
  closeOnBackdrop(dialog);
  byId('chart-close').addEventListener('click', () => dialog.close());
  let current = null;
  const draw = (name, samples) => {
    byId('chart-title').textContent = `Load of ${name} — last hour`;
    byId('chart-summary').textContent = describeLoad(samples);
    replaceChildren(byId('chart-body'), loadChart(samples, { width: 560, height: 220, axes: true }));
  };
  dialog.addEventListener('close', () => (current = null));
  return {
    open(name, samples) {
      current = name;
      draw(name, samples);
      dialog.showModal();
    },
    /** Redraws the open chart with fresher history. */
    update(history) {
      if (current !== null && dialog.open) draw(current, history[current] || []);
    },
  };
}
