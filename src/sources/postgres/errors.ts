/** PostgreSQL error classification lives in src/postgres/ (shared by the PostgreSQL source and destination). */
export * from '../../postgres/errors.js';
