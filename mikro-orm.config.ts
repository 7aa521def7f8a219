/**
 * MikroORM CLI configuration (`npx mikro-orm ...`), from the same environment as the service.
 * The service itself builds its options in src/db/orm.ts.
 */
import { loadConfig } from './src/config.js';
import { ormOptions } from './src/db/orm.js';

export default ormOptions(loadConfig().database);
