/** Entry point of the `eventful` command (bin/eventful.js runs the compiled copy). */
import { main } from './main.js';

process.exitCode = await main(process.argv);
