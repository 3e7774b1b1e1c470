import type * as http from 'node:http';
import { now, requestJson, sleep } from '../lib/http';
import { MiB } from '../lib/report';
import { createTask, waitOnNode, type Rig } from '../lib/rig';

/**
 * A one-image task created through the proxy and already on the node, with ClusterODM's route in place (its own
 * /task/<uuid>/info answers from the node: status COMPLETED rather than its local "forwarding" entry).
 */
export function routedTask(rig: Rig, o: { completed: boolean }): Promise<string> {
  return routedTaskVia(rig.daemon.url, rig.node.url, rig.agent, o);
}

/** The same through the ClusterODM at `base`, in front of the node at `nodeUrl`. */
export async function routedTaskVia(base: string, nodeUrl: string, agent: http.Agent, o: { completed: boolean }): Promise<string> {
  const { uuid } = await createTask(base, agent, { images: 1, perUpload: 1, imageBytes: MiB / 4 });
  await waitOnNode(nodeUrl, agent, uuid, 1, { timeoutMs: 60_000, completed: o.completed });
  const deadline = now() + 30_000;
  for (;;) {
    const info = await requestJson(`${base}/task/${uuid}/info`, { agent });
    if ((info['status'] as { code?: unknown } | undefined)?.code === 40) return uuid;
    if (now() > deadline) throw new Error(`ClusterODM has no route for ${uuid}: ${JSON.stringify(info).slice(0, 200)}`);
    await sleep(10);
  }
}
