// Runs the real daemon entry point (index.ts main) on loopback with ephemeral ports, for integration tests.
import { main } from '../../index';

void main(process.argv.slice(2), { host: '127.0.0.1', ephemeralPorts: true });
