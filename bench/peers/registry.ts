/**
 * Every system the benchmark knows, in the order they are listed in the output.
 *
 * To add a peer: write `systems/<name>.ts` exporting a `SystemFactory` (see `types.ts` for the
 * contract, and `systems/redis-streams.ts` for a short one), and add it to FACTORIES. A system
 * takes part in the workloads whose methods it implements; `--only=<id,...>` and
 * `--skip=<id,...>` choose systems for one run.
 */
import { eventfulSystems } from './systems/eventful.js';
import { natsSystems } from './systems/nats-jetstream.js';
import { postgresSystems } from './systems/postgres.js';
import { rabbitmqSystems } from './systems/rabbitmq.js';
import { redisSystems } from './systems/redis-streams.js';
import type { PeerSystem, SystemFactory, SystemOptions, Workload } from './types.js';

const FACTORIES: readonly SystemFactory[] = [eventfulSystems, rabbitmqSystems, natsSystems, redisSystems, postgresSystems];

export function createSystems(o: SystemOptions): PeerSystem[] {
  const systems = FACTORIES.flatMap((f) => f(o));
  const ids = new Set<string>();
  for (const s of systems) {
    if (ids.has(s.info.id)) throw new Error(`two systems share the id '${s.info.id}'`);
    ids.add(s.info.id);
  }
  return systems;
}

/** Whether a system can run a workload: it implements the methods the workload calls. */
export function supports(s: PeerSystem, w: Workload): boolean {
  switch (w) {
    case 'publish':
      return typeof s.publish === 'function';
    case 'consume':
      return typeof s.consume === 'function' && typeof s.publish === 'function';
    case 'latency':
      return typeof s.latency === 'function';
    case 'replay':
      return typeof s.replay === 'function' && typeof s.fillForReplay === 'function';
    case 'occ':
      return typeof s.occ === 'function';
  }
}
