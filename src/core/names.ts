/** Names of queues and consumer groups: one rule for both, checked the same way everywhere. */
import { InvalidArgumentError } from './errors.js';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
export const NAME_MAX = 200;

/** The name, checked: 1 to 200 letters, digits, '.', '_', ':' and '-', starting with a letter or digit. */
export function checkName(kind: 'queue' | 'group', name: unknown): string {
  if (typeof name !== 'string') throw new InvalidArgumentError(`${kind} name must be a string, got ${typeof name}`);
  if (name.length === 0 || name.length > NAME_MAX || !NAME_RE.test(name)) {
    throw new InvalidArgumentError(
      `${kind} name must be 1 to ${NAME_MAX} characters of letters, digits, '.', '_', ':' and '-', starting with a letter or digit; got '${String(name).slice(0, 80)}'`,
      { [kind]: String(name).slice(0, 80) },
    );
  }
  return name;
}
