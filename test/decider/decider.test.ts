/**
 * Command handling: decide/evolve over a stream, appends with the expected revision, retries on
 * conflict (many writers racing on one stream, none lost, none applied twice), refused commands,
 * and the given/when/then helpers users test their own deciders with.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WrongExpectedRevisionError, givenEvents, handleCommand, loadState, openStore } from '../../src/index.js';
import type { Decider, DeciderEvent } from '../../src/index.js';
import { tempDir } from '../helpers.js';

type Command = { type: 'Deposit'; amount: number } | { type: 'Withdraw'; amount: number } | { type: 'Open' };
interface Account {
  open: boolean;
  balance: number;
}

class InsufficientFunds extends Error {}

const account: Decider<Command, Account> = {
  initialState: { open: false, balance: 0 },
  decide(c, s) {
    if (c.type === 'Open') return s.open ? [] : [{ type: 'Opened' }];
    if (!s.open) throw new Error('the account is not open');
    if (c.type === 'Deposit') return [{ type: 'Deposited', data: { amount: c.amount } }];
    if (s.balance < c.amount) throw new InsufficientFunds(`balance ${s.balance} < ${c.amount}`);
    return [{ type: 'Withdrawn', data: { amount: c.amount } }];
  },
  evolve(s, e: DeciderEvent) {
    const amount = (e.data as { amount?: number } | undefined)?.amount ?? 0;
    switch (e.type) {
      case 'Opened':
        return { ...s, open: true };
      case 'Deposited':
        return { ...s, balance: s.balance + amount };
      case 'Withdrawn':
        return { ...s, balance: s.balance - amount };
      default:
        return s;
    }
  },
};

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
