/**
 * Corruption and recovery of the file log: torn and garbage tails of the last segment are cut
 * (and reported), an append that lost its COMMIT record vanishes whole, damage inside a sealed
 * segment is reported with file and offset instead of being skipped or cut, the directory lock
 * keeps out a second opener, and a lost index is rebuilt from the log.
 *
 * Segments are small (64 KiB) so a few hundred events span several files. The tests edit the
 * segment files directly, using the formats in src/log/segments.ts (64-byte header) and
 * src/log/record.ts (frames: u32 LE length first, COMMIT flag in byte 9, position u64 at 10).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { CorruptionError, StoreLockedError, openStore } from '../../src/index.js';
import type { EventInput, FileEventStore, RecordedEvent } from '../../src/index.js';

const SEGMENT_BYTES = 64 * 1024;
const HEADER_BYTES = 64;
const FLAG_COMMIT = 1;
const RECORD_MIN_BYTES = 67;

// ---------------------------------------------------------------------------------------------
// Helpers

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-corruption-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function open(dir: string): Promise<FileEventStore> {
  return openStore({ dir, segmentBytes: SEGMENT_BYTES });
}

/** Segment files of a store, oldest first. */
function segmentFiles(dir: string): string[] {
  const logDir = path.join(dir, 'log');
  return fs
    .readdirSync(logDir)
    .filter((n) => n.endsWith('.seg'))
    .sort()
    .map((n) => path.join(logDir, n));
}

function lastSegment(dir: string): string {
  const files = segmentFiles(dir);
  return files[files.length - 1]!;
}

interface FrameInfo {
  offset: number;
  length: number;
  flags: number;
  position: number;
}

/** The frames of a segment file, walked by their length fields (stops at anything odd). */
function readFrames(file: string): FrameInfo[] {
  const buf = fs.readFileSync(file);
  const out: FrameInfo[] = [];
  let off = HEADER_BYTES;
  while (off + 4 <= buf.length) {
    const length = buf.readUInt32LE(off);
    if (length < RECORD_MIN_BYTES || off + length > buf.length) break;
    out.push({ offset: off, length, flags: buf[off + 9]!, position: buf.readUInt32LE(off + 10) + buf.readUInt32LE(off + 14) * 2 ** 32 });
    off += length;
  }
  return out;
}

function appendBytes(file: string, bytes: Buffer): void {
  fs.appendFileSync(file, bytes);
}

function truncate(file: string, size: number): void {
  fs.truncateSync(file, size);
}

/** Deterministic pseudo-random bytes (a failing case must be reproducible). */
function garbage(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

function makeEvents(n: number, tag: string, padBytes = 200): EventInput[] {
  return Array.from({ length: n }, (_, i) => ({
    id: randomUUID(),
    type: `${tag}Happened`,
    data: { tag, i, pad: 'x'.repeat(padBytes) },
    metadata: { tag },
  }));
}

/** Appends `count` single-event or small-batch appends round-robin over `streams`. */
async function fill(store: FileEventStore, streams: string[], count: number, padBytes = 200): Promise<void> {
  for (let i = 0; i < count; i++) {
    const s = streams[i % streams.length]!;
    const info = await store.streamInfo(s);
    await store.append(s, makeEvents(1 + (i % 3), 'Fill', padBytes), { expectedRevision: info === undefined ? 'no_stream' : info.revision });
  }
}

/** Everything a reader can see of one event, as a comparable value. */
function snap(e: RecordedEvent): unknown[] {
  return [e.position, e.stream, e.revision, e.id, e.type, e.contentType, e.timestamp, Buffer.from(e.rawData).toString('hex'), e.metadata];
}

interface Contents {
  head: number;
  all: unknown[][];
  streams: Map<string, { events: unknown[][]; info: unknown }>;
  list: string[];
}

/** Reads everything a store shows: the whole log, and every stream by itself. */
async function contents(store: FileEventStore): Promise<Contents> {
  const all = await store.readAll().toArray();
  const names = (await store.listStreams({ limit: 10_000 })).map((x) => x.stream);
  const streams = new Map<string, { events: unknown[][]; info: unknown }>();
  for (const s of names) {
    streams.set(s, { events: (await store.readStream(s).toArray()).map(snap), info: await store.streamInfo(s) });
  }
  return { head: await store.headPosition(), all: all.map(snap), streams, list: names };
}

function assertSameContents(actual: Contents, expected: Contents, where: string): void {
  assert.equal(actual.head, expected.head, `${where}: head position`);
  assert.deepEqual(actual.list, expected.list, `${where}: listStreams`);
  assert.deepEqual(actual.all, expected.all, `${where}: readAll`);
  for (const [s, e] of expected.streams) {
    assert.deepEqual(actual.streams.get(s), e, `${where}: stream '${s}' (readStream and streamInfo)`);
  }
}

/** Checks that appends continue right after `head`, then that a clean reopen keeps them. */
async function assertAppendsCarryOn(dir: string, store: FileEventStore, stream: string, where: string): Promise<void> {
  const head = await store.headPosition();
  const info = await store.streamInfo(stream);
  const rev = info === undefined ? -1 : info.revision;
  const events = makeEvents(2, 'After');
  const r = await store.append(stream, events, { expectedRevision: rev < 0 ? 'no_stream' : rev });
  assert.deepEqual(r.positions, [head + 1, head + 2], `${where}: the next append's positions`);
  assert.equal(r.revision, rev + 2, `${where}: the next append's revision`);
  const before = await contents(store);
  await store.close();

  const again = await open(dir);
  try {
    assert.equal(again.recovery.truncatedBytes, 0, `${where}: a clean reopen cuts nothing`);
    assertSameContents(await contents(again), before, `${where}, reopened`);
    const tail = await again.readStream(stream, { direction: 'backwards', limit: 2 }).toArray();
    assert.deepEqual(tail.map((e) => e.id).reverse(), events.map((e) => e.id), `${where}: the appended events read back`);
  } finally {
    await again.close();
  }
}

/** Copies a closed store's directory (log, index, manifest) to a new temporary directory. */
function copyStore(t: TestContext, from: string): string {
  const to = tempDir(t);
  fs.cpSync(from, to, { recursive: true });
  return to;
}

async function rejectsWith<E extends Error>(p: Promise<unknown>, cls: new (...args: never[]) => E, where: string): Promise<E> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof cls, `${where}: expected ${cls.name}, got ${(err as Error)?.stack ?? String(err)}`);
    return err;
  }
  assert.fail(`${where}: expected ${cls.name}, but it succeeded`);
}

// ---------------------------------------------------------------------------------------------
// Torn and garbage tails of the last segment

test('garbage after the last record of the last segment is cut on open and reported', async (t) => {
  // Proves that recovery cuts exactly the garbage (reporting its length), keeps every earlier
  // event, and that appends continue from where the valid log ended.
  const base = tempDir(t);
  const streams = ['acct-1', 'acct-2', 'acct-3', 'acct-4'];
  let store = await open(base);
  await fill(store, streams, 300);
  const expected = await contents(store);
  await store.close();
  assert.ok(segmentFiles(base).length >= 3, 'the fixture spans several segments');

  const cases: Array<[string, Buffer]> = [
    ['zeros', Buffer.alloc(100)],
    ['0xff bytes', Buffer.alloc(37, 0xff)],
    ['3 bytes (less than a length field)', Buffer.from([7, 0, 0])],
    ['pseudo-random bytes', garbage(5000, 42)],
    ['a plausible length then garbage', Buffer.concat([Buffer.from([200, 0, 0, 0]), garbage(300, 7)])],
  ];
  for (const [name, junk] of cases) {
    const dir = copyStore(t, base);
    const file = lastSegment(dir);
    const size = fs.statSync(file).size;
    appendBytes(file, junk);

    store = await open(dir);
    try {
      assert.equal(store.recovery.truncatedBytes, junk.length, `${name}: truncatedBytes`);
      assert.equal(store.recovery.truncatedFile, file, `${name}: truncatedFile`);
      assert.equal(fs.statSync(file).size, size, `${name}: the file is cut back to its valid end`);
      assertSameContents(await contents(store), expected, name);
    } catch (err) {
      await store.close();
      throw err;
    }
    await assertAppendsCarryOn(dir, store, 'acct-2', name);
  }
});

test('a half-written record at the end of the last segment is cut on open', async (t) => {
  // Proves that a record torn anywhere inside its frame (even inside the length field) is cut,
  // and that it leaves no trace: its event is not readable and its position is reused.
  const base = tempDir(t);
  let store = await open(base);
  await fill(store, ['cart-1', 'cart-2'], 120);
  const expected = await contents(store);
  await store.close();

  // The frame the crash interrupted: the next append, written in a copy of the store.
  const scratch = copyStore(t, base);
  store = await open(scratch);
  const info = (await store.streamInfo('cart-1'))!;
  const torn = makeEvents(1, 'Torn');
  const r = await store.append('cart-1', torn, { expectedRevision: info.revision });
  await store.close();
  assert.equal(lastSegment(scratch).replace(scratch, ''), lastSegment(base).replace(base, ''), 'fixture: the torn append must go to the same segment');
  const frames = readFrames(lastSegment(scratch));
  const last = frames[frames.length - 1]!;
  assert.equal(last.position, r.positions[0], 'fixture: the last frame is the torn append');
  assert.equal(last.flags & FLAG_COMMIT, FLAG_COMMIT, 'fixture: a one-event append is its own COMMIT record');
  const frameBytes = fs.readFileSync(lastSegment(scratch)).subarray(last.offset, last.offset + last.length);

  for (const n of [1, 3, 4, 8, 40, 63, Math.floor(last.length / 2), last.length - 4, last.length - 1]) {
    const where = `first ${n} of ${last.length} bytes`;
    const dir = copyStore(t, base);
    const file = lastSegment(dir);
    appendBytes(file, frameBytes.subarray(0, n));
    store = await open(dir);
    try {
      assert.equal(store.recovery.truncatedBytes, n, `${where}: truncatedBytes`);
      assert.equal(store.recovery.truncatedFile, file, `${where}: truncatedFile`);
      assertSameContents(await contents(store), expected, where);
      assert.equal((await store.streamInfo('cart-1'))!.revision, info.revision, `${where}: the stream's revision`);
    } catch (err) {
      await store.close();
      throw err;
    }
    await assertAppendsCarryOn(dir, store, 'cart-1', where);
  }
});

test('a multi-event append whose COMMIT record is missing is cut entirely', async (t) => {
  // Proves that an append is atomic on disk: when its last (COMMIT) record is lost or torn,
  // recovery drops its earlier records too, so none of its events is ever visible.
  const base = tempDir(t);
  let store = await open(base);
  await fill(store, ['order-1', 'order-2', 'order-3'], 60);
  const before = await contents(store);
  const infoBefore = (await store.streamInfo('order-2'))!;
  await store.close();
  // `base` keeps the store as it was before the append, its index checkpoint included.
  const withAppend = copyStore(t, base);
  store = await open(withAppend);
  const three = makeEvents(3, 'Atomic');
  const r = await store.append('order-2', three, { expectedRevision: infoBefore.revision });
  assert.deepEqual(r.positions, [before.head + 1, before.head + 2, before.head + 3]);
  await store.close();
  assert.equal(lastSegment(withAppend).replace(withAppend, ''), lastSegment(base).replace(base, ''), 'fixture: the append must go to the same segment');

  const appendedFile = fs.readFileSync(lastSegment(withAppend));
  const frames = readFrames(lastSegment(withAppend)).slice(-3);
  assert.deepEqual(frames.map((f) => f.position), r.positions, 'fixture: the last three frames are the append');
  assert.deepEqual(frames.map((f) => f.flags & FLAG_COMMIT), [0, 0, FLAG_COMMIT], 'fixture: only the last record carries COMMIT');
  const [f1, f2, f3] = frames as [FrameInfo, FrameInfo, FrameInfo];

  // The COMMIT record cut off whole, and torn at two places inside it; with an index that
  // already covers the append (it was flushed, then the log lost its tail: the index must be
  // rebuilt) and with one whose checkpoint predates it (the usual crash: replay from there).
  for (const [keep, indexCoversAppend] of [[0, true], [20, true], [f3.length - 1, true], [0, false], [20, false], [f3.length - 1, false]] as const) {
    const where = `COMMIT record cut to ${keep} of ${f3.length} bytes, index ${indexCoversAppend ? 'covering' : 'predating'} the append`;
    let dir: string;
    if (indexCoversAppend) {
      dir = copyStore(t, withAppend);
      truncate(lastSegment(dir), f3.offset + keep);
    } else {
      dir = copyStore(t, base);
      appendBytes(lastSegment(dir), appendedFile.subarray(f1.offset, f3.offset + keep));
    }
    const file = lastSegment(dir);
    store = await open(dir);
    try {
      assert.equal(store.recovery.truncatedBytes, f1.length + f2.length + keep, `${where}: truncatedBytes`);
      assert.equal(store.recovery.truncatedFile, file, `${where}: truncatedFile`);
      assert.equal(fs.statSync(file).size, f1.offset, `${where}: the file ends where the append began`);
      if (keep === 0) assert.match(store.recovery.truncatedReason ?? '', /COMMIT/, `${where}: truncatedReason`);
      const ids = new Set(three.map((e) => e.id));
      const all = await store.readAll().toArray();
      assert.deepEqual(all.filter((e) => ids.has(e.id)), [], `${where}: none of the append's events in readAll`);
      const stream = await store.readStream('order-2').toArray();
      assert.deepEqual(stream.filter((e) => ids.has(e.id)), [], `${where}: none of the append's events in readStream`);
      assert.equal((await store.streamInfo('order-2'))!.revision, infoBefore.revision, `${where}: the stream's revision is as before`);
      assertSameContents(await contents(store), before, where);
      // The same append, retried, is written in full in the positions it never really held.
      const again = await store.append('order-2', three, { expectedRevision: infoBefore.revision });
      assert.deepEqual(again.positions, r.positions, `${where}: a retry lands where the lost append would have`);
    } catch (err) {
      await store.close();
      throw err;
    }
    await assertAppendsCarryOn(dir, store, 'order-2', where);
  }
});

// ---------------------------------------------------------------------------------------------
// Damage in a sealed segment

test('a flipped byte in a sealed segment is reported with its file and offset, never skipped', async (t) => {
  // Proves that damage a crash cannot explain (inside a sealed segment) is reported as a
  // CorruptionError naming the file and the record's offset, by reads and by a reopen that
  // has to rebuild the index, instead of being cut or silently skipped.
  const dir = tempDir(t);
  const store = await open(dir);
  let closed = false;
  t.after(async () => {
    // Only when an assertion failed before the close below.
    if (!closed) await store.close().catch(() => undefined);
  });
  await fill(store, ['ledger-1', 'ledger-2', 'ledger-3'], 250, 300);
  const files = segmentFiles(dir);
  assert.ok(files.length >= 3, 'fixture: several segments');
  // A stream written only in the last segment, which reads must still serve.
  await store.append('late-1', makeEvents(2, 'Late'), { expectedRevision: 'no_stream' });
  assert.equal(segmentFiles(dir).length, files.length, 'fixture: no roll while writing late-1');

  const sealed = files[0]!;
  const frames = readFrames(sealed);
  const victim = frames[Math.floor(frames.length / 2)]!;
  const victimEvent = (await store.readAll({ from: victim.position, limit: 1 }).toArray())[0]!;
  assert.equal(victimEvent.position, victim.position);
  // Bit rot under a running store: one byte of the event's data changes on disk.
  const fd = fs.openSync(sealed, 'r+');
  try {
    const b = Buffer.alloc(1);
    const at = victim.offset + victim.length - 10; // inside the data, before the trailing length
    fs.readSync(fd, b, 0, 1, at);
    b[0] = b[0]! ^ 0x5a;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }

  const e1 = await rejectsWith(store.readAll().toArray(), CorruptionError, 'readAll');
  assert.equal(e1.code, 'CORRUPTION');
  assert.equal(e1.file, sealed, 'readAll: the file');
  assert.equal(e1.offset, victim.offset, 'readAll: the offset of the damaged record');
  assert.match(e1.message, new RegExp(`${path.basename(sealed)}.*offset ${victim.offset}`));

  const e2 = await rejectsWith(store.readStream(victimEvent.stream).toArray(), CorruptionError, 'readStream');
  assert.equal(e2.file, sealed, 'readStream: the file');
  assert.equal(e2.offset, victim.offset, 'readStream: the offset of the damaged record');

  // Reads that do not touch the damaged segment still work.
  const late = await store.readStream('late-1').toArray();
  assert.equal(late.length, 2);
  const secondBase = Number(path.basename(files[1]!, '.seg'));
  const tail = await store.readAll({ from: secondBase }).toArray();
  assert.equal(tail[0]!.position, secondBase, 'readAll from the next segment on');
  assert.equal(tail[tail.length - 1]!.position, await store.headPosition());
  await store.close();
  closed = true;

  // With the index gone, opening must read the whole log, and stops at the damage.
  fs.rmSync(path.join(dir, 'index'), { recursive: true, force: true });
  const e3 = await rejectsWith(open(dir), CorruptionError, 'open without index');
  assert.equal(e3.file, sealed, 'open: the file');
  assert.equal(e3.offset, victim.offset, 'open: the offset of the damaged record');
  assert.equal(fs.statSync(sealed).size, frames[frames.length - 1]!.offset + frames[frames.length - 1]!.length, 'open: a sealed segment is never cut');
  // The failed open gave the directory back: a second try fails the same way, not STORE_LOCKED.
  const e4 = await rejectsWith(open(dir), CorruptionError, 'second open without index');
  assert.equal(e4.file, sealed);
  assert.equal(e4.offset, victim.offset);
});

// ---------------------------------------------------------------------------------------------
// The directory lock

test('a second openStore on a directory in use is refused with STORE_LOCKED', async (t) => {
  // Proves that two stores can never write one directory at once, that the refusal harms
  // neither, and that the directory opens again once the holder closes it.
  const dir = tempDir(t);
  const first = await open(dir);
  try {
    await first.append('lock-1', makeEvents(2, 'Locked'), { expectedRevision: 'no_stream' });
    const err = await rejectsWith(open(dir), StoreLockedError, 'second open');
    assert.equal(err.code, 'STORE_LOCKED');
    assert.equal(err.retriable, true);
    assert.match(err.message, new RegExp(`pid ${process.pid}`), 'the error names the holder');
    // The holder is unharmed.
    const r = await first.append('lock-1', makeEvents(1, 'Locked'), { expectedRevision: 1 });
    assert.deepEqual(r.positions, [3]);
    assert.equal((await first.readStream('lock-1').toArray()).length, 3);
  } finally {
    await first.close();
  }
  const second = await open(dir);
  try {
    assert.equal(second.recovery.truncatedBytes, 0);
    assert.equal((await second.streamInfo('lock-1'))!.revision, 2);
    await rejectsWith(open(dir), StoreLockedError, 'third open while the second holds it');
  } finally {
    await second.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Losing the index

test('a deleted index is rebuilt from a multi-segment log and every stream reads back the same', async (t) => {
  // Proves that the index is derived data: with <dir>/index gone, open rebuilds it from the
  // log, says so in the recovery report, and every read (and the next append) is as before.
  const dir = tempDir(t);
  let store = await open(dir);
  const streams = Array.from({ length: 12 }, (_, i) => `user-${i}`);
  await fill(store, streams, 400);
  const expected = await contents(store);
  await store.close();
  assert.ok(segmentFiles(dir).length >= 3, 'fixture: several segments');

  fs.rmSync(path.join(dir, 'index'), { recursive: true });
  store = await open(dir);
  try {
    assert.equal(store.recovery.indexRebuilt, true, 'recovery.indexRebuilt');
    assert.equal(store.recovery.replayedEvents, expected.head, 'every event was replayed into the new index');
    assert.equal(store.recovery.truncatedBytes, 0);
    assertSameContents(await contents(store), expected, 'after the rebuild');
  } catch (err) {
    await store.close();
    throw err;
  }
  await assertAppendsCarryOn(dir, store, 'user-3', 'after the rebuild');

  store = await open(dir);
  try {
    assert.equal(store.recovery.indexRebuilt, false, 'the rebuilt index is used on the next open');
    assert.equal(store.recovery.replayedEvents, 0);
  } finally {
    await store.close();
  }
});

test('a deleted index is rebuilt, and reported as rebuilt, when the log has one segment', async (t) => {
  // Proves that the recovery report tells the truth about a lost index for a small store too:
  // the index is rebuilt from the whole log and `indexRebuilt` says so.
  const dir = tempDir(t);
  let store = await open(dir);
  await fill(store, ['small-1', 'small-2'], 20);
  const expected = await contents(store);
  await store.close();
  assert.equal(segmentFiles(dir).length, 1, 'fixture: one segment');

  fs.rmSync(path.join(dir, 'index'), { recursive: true });
  store = await open(dir);
  try {
    assertSameContents(await contents(store), expected, 'after the rebuild');
    assert.equal(store.recovery.replayedEvents, expected.head, 'every event was replayed into the new index');
    assert.equal(store.recovery.indexRebuilt, true, 'recovery.indexRebuilt');
  } finally {
    await store.close();
  }
});

test('an index left open by an earlier boot of the machine is rebuilt from the log; one left by a crashed process is kept', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-boot-'));
  try {
    let store = await openStore({ dir, durability: 'none' });
    await store.append('boot-1', [{ type: 'A' }, { type: 'B' }]);
    await store.close();
    const marker = path.join(dir, 'index', 'OPEN');
    assert.equal(fs.existsSync(marker), false, 'a clean close removes the marker');
    // A process that died with the index open leaves the marker with this boot's id: kept.
    const thisBoot = fs.existsSync('/proc/sys/kernel/random/boot_id') ? fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() : undefined;
    if (thisBoot !== undefined) {
      fs.writeFileSync(marker, thisBoot + '\n');
      store = await openStore({ dir, durability: 'none' });
      assert.equal(store.recovery.indexRebuilt, false);
      await store.close();
    }
    // A marker from another boot: the OS went down with unsynced index pages, so rebuild.
    fs.writeFileSync(marker, 'an-earlier-boot\n');
    store = await openStore({ dir, durability: 'none' });
    try {
      assert.equal(store.recovery.indexRebuilt, true);
      assert.match(store.recovery.indexRebuildReason ?? '', /restarted/);
      assert.deepEqual((await store.readStream('boot-1').toArray()).map((e) => e.type), ['A', 'B']);
    } finally {
      await store.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
