/** `npm run db:migrate`: applies the committed migrations (drizzle/) to DATABASE_URL, or to PGlite in DATA_DIR. */
import { openDatabase } from '../src/store/database.ts';

const url = process.env.DATABASE_URL;
const dataDir = process.env.DATA_DIR ?? '.data';
const database = await openDatabase({ url, dataDir });
await database.close();
process.stdout.write(`migrations applied (${database.driver}${url ? '' : `, ${dataDir}`})\n`);
