// Preloaded (--require) into every child the bench starts: when the bench dies without cleaning up (SIGKILL), the
// child is re-parented, notices within half a second and stops itself (SIGTERM, then a hard exit).
const parent = process.ppid;
const timer = setInterval(() => {
  if (process.ppid === parent) return;
  clearInterval(timer);
  process.kill(process.pid, 'SIGTERM');
  setTimeout(() => process.exit(1), 10_000).unref();
}, 500);
timer.unref();
