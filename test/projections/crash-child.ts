/**
 * A projection process for the crash test, killed with SIGKILL by the parent.
 *
 * argv: <events dir> <lmdb|postgres> <lmdb dir | postgres url> <schema> <block at position, 0: none> <batchEventsMax> <busy µs per event>
 *
 * The projection counts Tick events per stream and checks, in its handler, that each event is
 * the one after the last it applied to that stream: an event applied twice (or skipped) would
 * fault it at once. With a block position, the handler of that event says 'blocked' on stdout
 * and never returns, so the kill lands with a batch half applied and not committed.
 * stdout: 'ready', 'at <position>' every 250 positions applied, 'pos <checkpoint>' when the checkpoint
 * moves (and the event loop is free to say so), 'blocked', 'done'.
 */
import fs from 'node:fs';
import { openStore } from '../../src/index.js';
import { Projection, defineProjection, openLmdbReadModelStore, openPostgresReadModelStore } from '../../src/projections/index.js';

const [eventsDir, kind, target, schema, blockAtArg, batchArg, busyArg] = process.argv.slice(2);
const blockAt = Number(blockAtArg);
// Work per event, so that a kill at a random moment finds the projection in the middle of its run.
const busyMs = Number(busyArg ?? 0) / 1000;

const counts = defineProjection<{ streams: { n: number; last: number }; totals: { n: number } }>({
  name: 'counts',
  filter: { category: 'tick' },
  handlers: {
    async Tick(e, m) {
      if (e.position === blockAt) {
        process.stdout.write('blocked\n');
        await new Promise(() => {});
      }
      if (busyMs > 0) for (const t0 = performance.now(); performance.now() - t0 < busyMs; );
      // Written synchronously: the parent sees it at once, even while this loop keeps the event loop busy.
      if (e.position % 250 === 0) fs.writeSync(1, `at ${e.position}\n`);
      m.update('streams', e.stream, (d) => {
        const last = d?.last ?? -1;
        if (e.revision !== last + 1) throw new Error(`${e.stream}: revision ${e.revision} after ${last}: applied twice or skipped`);
        return { n: (d?.n ?? 0) + 1, last: e.revision };
      });
      m.update('totals', 'all', (t) => ({ n: (t?.n ?? 0) + 1 }));
    },
  },
});

const store = await openStore({ dir: eventsDir! });
const rm = kind === 'lmdb' ? openLmdbReadModelStore({ dir: target! }) : openPostgresReadModelStore({ url: target!, schema: schema! });
const p = new Projection(store, rm, counts, { batchEventsMax: Number(batchArg) });
let last = -1;
setInterval(() => {
  const st = p.status();
  if (st.position !== last) {
    last = st.position;
    process.stdout.write(`pos ${last}\n`);
  }
  if (st.state === 'faulted') {
    process.stdout.write(`faulted ${st.error?.message}\n`);
    process.exit(3);
  }
}, 2);
process.stdout.write('ready\n');
await p.catchUp();
process.stdout.write(`pos ${p.status().position}\ndone\n`);
process.exit(0);
