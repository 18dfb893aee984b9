/**
 * Command handling: decide/evolve over a stream, appends with the expected revision, retries on
 * conflict (many writers racing on one stream, none lost, none applied twice), refused commands,
 * upcasting of stored events, and the given/when/then helpers users test their own deciders with.
 * Snapshots: snapshots.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError, Upcasters, WrongExpectedRevisionError, givenEvents, handleCommand, loadState, openStore } from '../../src/index.js';
import type { Decider, DeciderEvent } from '../../src/index.js';
import { tempDir } from '../helpers.js';
import { InsufficientFunds, account } from './account.js';
import type { Account, Command } from './account.js';

test('handleCommand folds the stream, decides, and appends with the expected revision', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    const opened = await handleCommand(store, 'account-1', account, { type: 'Open' });
    assert.equal(opened.revision, 0);
    assert.deepEqual(opened.state, { open: true, balance: 0 });
    const again = await handleCommand(store, 'account-1', account, { type: 'Open' });
    assert.deepEqual(again.events, [], 'an idempotent command decides nothing and appends nothing');
    assert.equal(again.revision, 0);
    const dep = await handleCommand(store, 'account-1', account, { type: 'Deposit', amount: 50 }, { metadata: { actor: 'test' } });
    assert.equal(dep.revision, 1);
    assert.equal(dep.state.balance, 50);
    const [stored] = await store.readStream('account-1', { from: 1 }).toArray();
    assert.deepEqual(stored!.metadata, { actor: 'test' });
    await assert.rejects(handleCommand(store, 'account-1', account, { type: 'Withdraw', amount: 80 }), InsufficientFunds);
    assert.equal((await store.streamInfo('account-1'))!.revision, 1, 'a refused command appends nothing');
    await assert.rejects(handleCommand(store, 'account-2', account, { type: 'Deposit', amount: 1 }), /not open/);
    assert.equal(await store.streamInfo('account-2'), undefined);
    const loaded = await loadState(store, 'account-1', account);
    assert.deepEqual(loaded, { state: { open: true, balance: 50 }, revision: 1 });
  } finally {
    await store.close();
  }
});

test('racing writers on one stream: every command lands once, conflicts are retried, none is lost', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    await handleCommand(store, 'account-9', account, { type: 'Open' });
    const writers = 20;
    const results = await Promise.all(Array.from({ length: writers }, () => handleCommand(store, 'account-9', account, { type: 'Deposit', amount: 1 }, { retries: 100, backoffMs: 1 })));
    assert.ok(results.some((r) => r.attempts > 1), 'some writers met a conflict and retried');
    const { state, revision } = await loadState(store, 'account-9', account);
    assert.equal(state.balance, writers, 'each deposit applied exactly once');
    assert.equal(revision, writers);
    // Withdrawals racing for the whole balance: exactly one wins, the others see the new state and are refused.
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => handleCommand(store, 'account-9', account, { type: 'Withdraw', amount: writers }, { retries: 100, backoffMs: 1 })));
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1);
    for (const o of outcomes) if (o.status === 'rejected') assert.ok(o.reason instanceof InsufficientFunds, String(o.reason));
    // With no retries left a conflict surfaces as WrongExpectedRevisionError.
    const sneaky: Decider<Command, Account> = {
      ...account,
      async decide(c, s) {
        await store.append('account-9', [{ type: 'Deposited', data: { amount: 1 } }]); // another writer gets in first
        return account.decide(c, s);
      },
    };
    await assert.rejects(handleCommand(store, 'account-9', sneaky, { type: 'Deposit', amount: 1 }, { retries: 0 }), WrongExpectedRevisionError);
  } finally {
    await store.close();
  }
});

test('given / when / then: events, refusals and state, with failures that say what differs', async () => {
  await givenEvents(account, [{ type: 'Opened' }, { type: 'Deposited', data: { amount: 10 } }])
    .when({ type: 'Withdraw', amount: 4 })
    .then([{ type: 'Withdrawn', data: { amount: 4 } }]);
  await givenEvents(account, [{ type: 'Opened' }]).when({ type: 'Withdraw', amount: 1 }).thenThrows(InsufficientFunds);
  await givenEvents(account, []).when({ type: 'Deposit', amount: 1 }).thenThrows(/not open/);
  await givenEvents(account, [{ type: 'Opened' }]).when({ type: 'Deposit', amount: 7 }).thenState({ open: true, balance: 7 });
  // The helpers fail when they should.
  await assert.rejects(givenEvents(account, [{ type: 'Opened' }]).when({ type: 'Deposit', amount: 7 }).then([{ type: 'Deposited', data: { amount: 8 } }]), assert.AssertionError);
  await assert.rejects(givenEvents(account, [{ type: 'Opened' }]).when({ type: 'Deposit', amount: 7 }).thenThrows(), /expected the command to be refused/);
  await assert.rejects(givenEvents(account, [{ type: 'Opened' }]).when({ type: 'Withdraw', amount: 1 }).thenThrows(TypeError), /expected TypeError/);
  await assert.rejects(givenEvents(account, [{ type: 'Opened' }]).when({ type: 'Deposit', amount: 7 }).thenState({ open: true, balance: 0 }), assert.AssertionError);
});

test('two commands racing on one stream both succeed, at distinct revisions, one of them after a retry', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    await handleCommand(store, 'account-race', account, { type: 'Open' });
    // Both commands load revision 0 and decide before either appends: a real race, every time.
    let arrived = 0;
    let release!: () => void;
    const bothDecided = new Promise<void>((r) => (release = r));
    const gated: Decider<Command, Account> = {
      ...account,
      async decide(c, s) {
        if (++arrived === 2) release();
        await bothDecided;
        return account.decide(c, s);
      },
    };
    const [a, b] = await Promise.all([
      handleCommand(store, 'account-race', gated, { type: 'Deposit', amount: 1 }, { backoffMs: 1 }),
      handleCommand(store, 'account-race', gated, { type: 'Deposit', amount: 10 }, { backoffMs: 1 }),
    ]);
    assert.deepEqual([a.revision, b.revision].sort(), [1, 2]);
    // The loser may take more than one retry: the store can refuse its append before the
    // winner's is readable (it is acknowledged only once durable), so a read-on can come back
    // empty, and the next attempt conflicts again.
    assert.equal(Math.min(a.attempts, b.attempts), 1, 'the winner appended at its first attempt');
    assert.ok(Math.max(a.attempts, b.attempts) >= 2, 'the loser of the race read on and decided again');
    const loser = a.attempts === 2 ? a : b;
    assert.equal(loser.state.balance, 11, 'the retried command decided against the state with the winner in it');
    assert.notDeepEqual(a.positions, b.positions);
    const { state, revision } = await loadState(store, 'account-race', account);
    assert.deepEqual({ state, revision }, { state: { open: true, balance: 11 }, revision: 2 });
  } finally {
    await store.close();
  }
});

// The account's events as they were first written: amounts in cents, and the deposit under
// another name. The transforms turn them into what `account` reads today.
const accountUpcasters = () =>
  new Upcasters([
    { type: 'MoneyDeposited', fromVersion: 1, newType: 'Deposited', upcast: (d) => ({ amount: (d as { cents: number }).cents / 100 }) },
    { type: 'Withdrawn', fromVersion: 1, upcast: (d) => ({ amount: (d as { cents: number }).cents / 100 }) },
  ]);

test('upcasters: evolve sees stored events in their current shape; decided events are stamped with the current version', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    await store.append('account-old', [
      { type: 'Opened' },
      { type: 'MoneyDeposited', data: { cents: 5000 } },
      { type: 'Withdrawn', data: { cents: 1000 } },
    ]);
    const upcasters = accountUpcasters();
    const seen: DeciderEvent[] = [];
    const watching: Decider<Command, Account> = { ...account, evolve: (s, e) => (seen.push(e), account.evolve(s, e)) };
    const loaded = await loadState(store, 'account-old', watching, { upcasters });
    assert.deepEqual(loaded, { state: { open: true, balance: 40 }, revision: 2 });
    assert.deepEqual(
      seen.map((e) => [e.type, e.data, e.metadata?.schemaVersion, e.revision]),
      [
        ['Opened', null, undefined, 0],
        ['Deposited', { amount: 50 }, 2, 1],
        ['Withdrawn', { amount: 10 }, 2, 2],
      ],
    );
    // Without the upcasters neither old event is understood: no deposit, a withdrawal of nothing.
    assert.equal((await loadState(store, 'account-old', account)).state.balance, 0);

    const r = await handleCommand(store, 'account-old', account, { type: 'Withdraw', amount: 15 }, { upcasters, metadata: { actor: 'ann' } });
    assert.equal(r.state.balance, 25);
    assert.deepEqual(r.events, [{ type: 'Withdrawn', data: { amount: 15 }, metadata: { schemaVersion: 2, actor: 'ann' }, revision: 3 }]);
    const [stored] = await store.readStream('account-old', { from: 3 }).toArray();
    assert.deepEqual(stored!.metadata, { schemaVersion: 2, actor: 'ann' }, 'written at the current version, so it is not upcast again');
    assert.equal((await loadState(store, 'account-old', account, { upcasters })).state.balance, 25);
    // A renamed type's version goes on from the version the rename wrote.
    const d = await handleCommand(store, 'account-old', account, { type: 'Deposit', amount: 5 }, { upcasters });
    assert.deepEqual(d.events[0]!.metadata, { schemaVersion: 2 });
    assert.equal((await loadState(store, 'account-old', account, { upcasters })).state.balance, 30);
    // A type without transforms is written without a schemaVersion.
    const o = await handleCommand(store, 'account-new', account, { type: 'Open' }, { upcasters });
    assert.equal(o.events[0]!.metadata, undefined);
    assert.equal((await store.readStream('account-new').toArray())[0]!.rawMetadata, undefined);
  } finally {
    await store.close();
  }
});

test('upcasters in given / when / then: given events in their stored shapes', async () => {
  const upcasters = accountUpcasters();
  const history = [{ type: 'Opened' }, { type: 'MoneyDeposited', data: { cents: 1200 } }];
  await givenEvents(account, history, { upcasters }).when({ type: 'Withdraw', amount: 12 }).thenState({ open: true, balance: 0 });
  await givenEvents(account, history, { upcasters }).when({ type: 'Withdraw', amount: 13 }).thenThrows(InsufficientFunds);
  await givenEvents(account, [...history, { type: 'Withdrawn', data: { amount: 2 }, metadata: { schemaVersion: 2 } }], { upcasters })
    .when({ type: 'Withdraw', amount: 10 })
    .then([{ type: 'Withdrawn', data: { amount: 10 } }]);
  // Without them the old deposit is not understood.
  await givenEvents(account, history).when({ type: 'Withdraw', amount: 12 }).thenThrows(InsufficientFunds);
  assert.throws(() => givenEvents(account, history, { upcaster: upcasters } as never), /unknown givenEvents option 'upcaster'/);
});

test('options are checked: unknown keys and bad values are refused before anything is read or written', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    await assert.rejects(handleCommand(store, 'account-x', account, { type: 'Open' }, { snapshot: {} } as never), (e: unknown) => e instanceof InvalidArgumentError && /unknown handleCommand option 'snapshot'/.test(e.message));
    await assert.rejects(handleCommand(store, 'account-x', account, { type: 'Open' }, { backoffMs: -1 }), /backoffMs/);
    await assert.rejects(handleCommand(store, 'account-x', account, { type: 'Open' }, { upcasters: {} as never }), /upcasters must be an Upcasters registry/);
    // A state and revision to fold on from go in `from`; given bare they are refused, not misread.
    await assert.rejects(loadState(store, 'account-x', account, { state: account.initialState, revision: -1 } as never), /unknown loadState option 'state'/);
    assert.equal(await store.streamInfo('account-x'), undefined);
    await handleCommand(store, 'account-x', account, { type: 'Open' });
    await handleCommand(store, 'account-x', account, { type: 'Deposit', amount: 3 });
    const from = await loadState(store, 'account-x', account, { from: { state: { open: true, balance: 100 }, revision: 0 } });
    assert.deepEqual(from, { state: { open: true, balance: 103 }, revision: 1 }, 'folds on from the given state, after its revision');
  } finally {
    await store.close();
  }
});
