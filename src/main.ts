/** Starts the gateway from environment variables. */
import { createGateway } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './log.ts';

async function start() {
  const config = loadConfig();
  const log = createLogger(config.LOG_LEVEL);
  return { log, gateway: await createGateway(config, log) };
}

let started;
try {
  started = await start();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`helssa-live: ${error.message}\n`);
  process.exit(78);
}
const { log, gateway } = started;
const port = await gateway.listen();
log.info({ port }, 'gateway listening');
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log.info({ signal }, 'shutting down');
    void gateway.close().then(() => process.exit(0));
  });
}
