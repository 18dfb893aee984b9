/**
 * The most recent event ids with their stream and revision, for recognising retried appends
 * that used expectedRevision `any` or `stream_exists`.
 *
 * Two generations: ids go into the young one; when it holds `capacity` ids it becomes the old
 * one and the previous old one is dropped whole. So the window holds at least the last
 * `capacity` ids (at most twice that), and no entry is ever deleted: a Map that has entries
 * deleted while others are added rehashes all of them from time to time, which held the event
 * loop for milliseconds at a time with 100,000 ids. A generation maps an id to a slot in plain
 * arrays, so remembering an id allocates no object for the garbage collector to trace.
 */
export interface IdWindowEntry {
  stream: string;
  revision: number;
}

class Generation {
  readonly slots = new Map<string, number>();
  readonly streams: string[] = [];
  readonly revisions: number[] = [];
}

export class IdWindow {
  readonly capacity: number;
  #young = new Generation();
  #old = new Generation();

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get size(): number {
    return this.#young.slots.size + this.#old.slots.size;
  }

  get(id: string): IdWindowEntry | undefined {
    for (const g of [this.#young, this.#old]) {
      const slot = g.slots.get(id);
      if (slot !== undefined) return { stream: g.streams[slot]!, revision: g.revisions[slot]! };
    }
    return undefined;
  }

  add(id: string, stream: string, revision: number): void {
    if (this.capacity === 0) return;
    if (this.#young.streams.length >= this.capacity) {
      this.#old = this.#young;
      this.#young = new Generation();
    }
    const g = this.#young;
    g.slots.set(id, g.streams.length);
    g.streams.push(stream);
    g.revisions.push(revision);
  }
}
