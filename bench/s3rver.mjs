// The S3 server for the benchmark, in its own process so it never shares an event loop
// with the code being measured. Prints its port on stdout.
import process from 'node:process';
import S3rver from 's3rver';

const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: process.argv[2] });
const { port } = await server.run();
process.stdout.write(`${port}\n`);
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
