/** The decider the command-handling tests share: a bank account that can be opened, paid into and drawn on. */
import type { Decider, DeciderEvent } from '../../src/index.js';

export type Command = { type: 'Deposit'; amount: number } | { type: 'Withdraw'; amount: number } | { type: 'Open' };
export interface Account {
  open: boolean;
  balance: number;
}

export class InsufficientFunds extends Error {}

export const account: Decider<Command, Account> = {
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
