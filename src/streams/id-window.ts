/**
 * The most recent event ids with their stream and revision, for recognising retried appends
 * that used expectedRevision `any` or `stream_exists`.
 *
 * Two generations of maps: ids go into the young one; when it holds `capacity` ids it becomes
 * the old one and the previous old one is dropped whole. So the window holds at least the last
 * `capacity` ids (at most twice that), and no entry is ever deleted: a Map that has entries
 * deleted while others are added rehashes all of them from time to time, which held the event
 * loop for milliseconds at a time with 100,000 ids. (Evicting through a Map's iterator was
 * worse: a walk over every deleted entry.)
 */
export interface IdWindowEntry {
  stream: string;
  revision: number;
}

export class IdWindow {
  readonly capacity: number;
  #young = new Map<string, IdWindowEntry>();
  #old = new Map<string, IdWindowEntry>();

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get size(): number {
    return this.#young.size + this.#old.size;
  }

  get(id: string): IdWindowEntry | undefined {
    return this.#young.get(id) ?? this.#old.get(id);
  }

  add(id: string, stream: string, revision: number): void {
    if (this.capacity === 0) return;
    if (this.#young.size >= this.capacity) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(id, { stream, revision });
  }
}
