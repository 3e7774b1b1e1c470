// Child process for the crash test: saves ever-growing versions of a JSON array as fast as it can,
// printing "saved <n>" after each durable save, until it is killed.
import { MemoryLogger, systemClock } from '../../src/core';
import { JsonStateFile } from '../../src/store';

const file = process.argv[2];
if (!file) throw new Error('usage: state-writer-main <file>');
const store = new JsonStateFile<unknown>({ file, parse: (v) => v, logger: new MemoryLogger(), clock: systemClock });

async function run(): Promise<void> {
  for (let n = 1; ; n++) {
    const payload = Array.from({ length: 2000 }, (_, i) => ({ hostname: `node-${n}-${i}`, port: 3000 + (i % 1000), token: '' }));
    await store.save(() => JSON.stringify(payload));
    process.stdout.write(`saved ${n}\n`);
  }
}
void run();
