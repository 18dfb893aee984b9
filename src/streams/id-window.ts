/**
 * The most recent event ids with their stream and revision, for recognising retried appends
 * that used expectedRevision `any` or `stream_exists`. Bounded: a ring of the last `capacity`
 * ids says which one to forget next, so adding is O(1) however long the store runs. (Evicting
 * through a Map's iterator instead costs a walk over every deleted entry: it slowed appends
 * more than tenfold once the window was full.) The map holds ring slots, not objects, so
 * remembering an id allocates nothing.
 */
export interface IdWindowEntry {
  stream: string;
  revision: number;
}

export class IdWindow {
  readonly capacity: number;
  #slots = new Map<string, number>();
  #ids: Array<string | undefined>;
  #streams: Array<string | undefined>;
  #revisions: Float64Array;
  #next = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.#ids = new Array<string | undefined>(capacity);
    this.#streams = new Array<string | undefined>(capacity);
    this.#revisions = new Float64Array(capacity);
  }

  get size(): number {
    return this.#slots.size;
  }

  get(id: string): IdWindowEntry | undefined {
    const slot = this.#slots.get(id);
    return slot === undefined ? undefined : { stream: this.#streams[slot]!, revision: this.#revisions[slot]! };
  }

  add(id: string, stream: string, revision: number): void {
    if (this.capacity === 0) return;
    const slot = this.#next;
    this.#next = slot + 1 === this.capacity ? 0 : slot + 1;
    const old = this.#ids[slot];
    if (old !== undefined && this.#slots.get(old) === slot) this.#slots.delete(old);
    this.#ids[slot] = id;
    this.#streams[slot] = stream;
    this.#revisions[slot] = revision;
    this.#slots.set(id, slot);
  }
}
