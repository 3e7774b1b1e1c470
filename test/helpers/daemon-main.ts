// Runs the real daemon entry point (index.ts main) on loopback with ephemeral ports, for integration tests.
// CLUSTERODM_TEST_TUNING (JSON) shortens the daemon's waits, e.g. {"forwardRetryBaseMs": 50}.
import { main } from '../../index';

const tuning = process.env['CLUSTERODM_TEST_TUNING'] ? (JSON.parse(process.env['CLUSTERODM_TEST_TUNING']) as Record<string, number>) : {};
void main(process.argv.slice(2), { host: '127.0.0.1', ephemeralPorts: true, tuning });
