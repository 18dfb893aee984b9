/**
 * Consumer groups' public vocabulary, shared by the embedded store and the client.
 *
 * A consumer group is a named, durable reader of the log: its members share the events that match
 * its filter, and the server keeps its checkpoints, so a member that joins (or takes over) goes on
 * from where the group was. Two modes:
 *
 * - `single`: single active consumer. The member that joined first receives every event, in log
 *   order; the others stand by, and the oldest of them takes over, from the last checkpoint, when
 *   the active one leaves or its connection dies.
 * - `partitioned`: the group has a fixed number of partitions, and each stream belongs to one of
 *   them by a stable hash of its name. Partitions are spread over the members; a stream's events
 *   go to one member at a time, in order. When members join or leave, partitions move, and a
 *   partition moves only once its old owner has handled (or given up) what it was given.
 *
 * Delivery is at-least-once. A partition's checkpoint is the position up to which its events are
 * handled; events after it are delivered again after a crash, a timeout, or a member leaving
 * before it committed them.
 */
import type { ReadAllFilter, RecordedEvent } from './events.js';

export type GroupMode = 'single' | 'partitioned';

export interface GroupSettings {
  /** Which events the group reads (streams starting with '$' never match). `{}`: every application event. */
  filter: ReadAllFilter;
  mode: GroupMode;
  /** 1 in `single` mode. @default 16 in `partitioned` mode */
  partitions: number;
}

/** Settings as given to `create` or a first `join`. */
export interface GroupSettingsInput {
  filter?: ReadAllFilter;
  /** @default 'single' */
  mode?: GroupMode;
  /** @default 16 in partitioned mode (fixed once the group exists) */
  partitions?: number;
  /** Where a new group starts: the first position it reads, 'start', or 'end' (only new events). @default 'start' */
  from?: number | 'start' | 'end';
}

export interface GroupInfo {
  name: string;
  settings: GroupSettings;
  /** First position the group reads. */
  startPosition: number;
  /** Log position of the record that created the group. */
  createdPosition: number;
  createdAt: number;
}

export interface GroupMemberInfo {
  id: string;
  /** The name the member gave when it joined (for people reading stats). */
  name: string;
  joinedAt: number;
  /** Partitions it receives now (in `single` mode: [0] for the active member, [] for standby). */
  partitions: number[];
  /** Partitions it is giving up: it receives no more of them and holds some not yet handled. */
  revoking: number[];
  /** Every event it was given at or below this position is handled (its last commit). */
  committedPosition: number;
}

export interface GroupStats extends GroupInfo {
  /** Per partition: the position up to which its events are handled. */
  checkpoints: number[];
  /** The lowest checkpoint: nothing at or below it will be delivered again. */
  position: number;
  /** Last position of the log. */
  head: number;
  /** Log positions between the lowest checkpoint and the head (cheap; counts other streams too). */
  lagPositions: number;
  /** Matching events not yet handled, counted up to `groupLagScanEventsMax`. */
  lagEvents: number;
  /** False when the count stopped at `groupLagScanEventsMax` (a lower bound). */
  lagExact: boolean;
  /** Age of the oldest event not yet handled, ms (0 when none waits). */
  lagMs: number;
  members: GroupMemberInfo[];
}

export interface JoinOptions extends GroupSettingsInput {
  /** A name for this member in stats. @default a generated one */
  memberName?: string;
  /**
   * Commit for the caller: an event counts as handled when the next one is asked for, and
   * checkpoints are written every `groupCheckpointIntervalMs`. @default true
   */
  autoCommit?: boolean;
}

/**
 * One member of a consumer group. Iterate with `for await` (events) or `pages()` (arrays of
 * events): while the member stands by, the iteration waits; when it gets partitions, events
 * come. `close()` leaves the group (its partitions go to other members) and ends the iteration.
 */
export interface GroupMember extends AsyncIterable<RecordedEvent> {
  readonly group: string;
  readonly id: string;
  /** Partitions this member receives now (empty while standing by). */
  readonly partitions: readonly number[];
  /**
   * Marks every event this member was given, up to `upTo` (an event or a position; default: all
   * it was given), as handled, and resolves once the checkpoint is durable.
   */
  commit(upTo?: RecordedEvent | number): Promise<void>;
  /** The same events in pages, as they are read. Use either this or the event iterator. */
  pages(): AsyncIterable<RecordedEvent[]>;
  /** Commits what auto-commit has counted as handled, then leaves the group. */
  close(): Promise<void>;
}

export interface Groups {
  /** Creates a group; with the settings it already has, returns it as it is. */
  create(name: string, settings?: GroupSettingsInput): Promise<GroupInfo>;
  /** Joins a group, creating it with these settings when it does not exist. */
  join(name: string, options?: JoinOptions): GroupMember;
  get(name: string): Promise<GroupInfo | undefined>;
  list(): Promise<GroupInfo[]>;
  stats(name: string): Promise<GroupStats>;
  /** Moves every checkpoint so that reading starts at `to`. Only while no member is joined. */
  reset(name: string, to: number | 'start' | 'end'): Promise<GroupStats>;
  /** Deletes the group; joined members are closed. */
  delete(name: string): Promise<void>;
}
