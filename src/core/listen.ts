import type { AddressInfo, Server } from 'node:net';

/** Starts listening (port 0 = an ephemeral port); resolves to the bound port, rejects on EADDRINUSE and the like. */
export function listen(server: Server, port: number, host?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
