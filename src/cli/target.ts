/**
 * Where a command's events are: a server (`--url`, `--token`), or, for the commands that can
 * work without one, a data directory no server holds (`--data`). Shared by every command.
 */
import { CommanderError, Option } from 'commander';
import type { Command } from 'commander';
import type { EventStore } from '../core/events.js';
import type { RemoteEventStore } from '../client/index.js';

export interface ClientOpts {
  url?: string;
  token?: string;
  json?: boolean;
}

export interface StoreOpts extends ClientOpts {
  data?: string;
}

/** --url, --token and --json. */
export function clientOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--url <url>', 'server address (tcp://, tls://, ws://, wss://)').env('EVENTFUL_URL').default('tcp://127.0.0.1:7071'))
    .addOption(new Option('--token <token>', 'auth token').env('EVENTFUL_TOKEN'))
    .option('--json', 'machine-readable output (one JSON document per line)');
}

/** clientOptions, and --data <dir> for an embedded store instead of a server. */
export function storeOptions(cmd: Command): Command {
  return clientOptions(cmd).option('--data <dir>', 'a data directory instead of a server (no server may hold it)');
}

export async function withClient<T>(o: ClientOpts, fn: (store: RemoteEventStore) => Promise<T>): Promise<T> {
  const { connect } = await import('../client/index.js');
  const store = await connect(o.url, { token: o.token, reconnect: false });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** The store storeOptions name: the data directory, or the server. */
export async function openTarget(o: StoreOpts, cmd: Command): Promise<EventStore> {
  if (o.data !== undefined) {
    if (cmd.getOptionValueSource('url') === 'cli') throw new CommanderError(2, 'eventful.usage', 'give --url or --data, not both');
    const { openStore } = await import('../streams/store.js');
    return openStore({ dir: o.data });
  }
  const { connect } = await import('../client/index.js');
  return connect(o.url, { token: o.token, reconnect: false });
}
