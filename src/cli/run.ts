/** Entry point of the `eventful` command (bin/eventful.js runs the compiled copy). */
import { main } from './main.js';

// `eventful read ... | head`: the reader went away; stop quietly rather than with a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

process.exitCode = await main(process.argv);
