/**
 * Runs `eventful projection ...` as src/cli/main.ts will once the commands are registered
 * there: the same error handling and exit codes.
 */
import { Command, CommanderError } from 'commander';
import { EventfulError } from '../../src/core/errors.js';
import { registerProjectionCommands } from '../../src/cli/projection.js';

const program = new Command('eventful').exitOverride().configureOutput({ writeErr: (s) => process.stderr.write(s) });
registerProjectionCommands(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    if (err.code.startsWith('eventful.')) process.stderr.write(`eventful: ${err.message}\n`);
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (err instanceof EventfulError) {
    process.stderr.write(`eventful: ${err.code}: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`eventful: ${(err as Error).message}\n`);
    process.exitCode = 2;
  }
}
