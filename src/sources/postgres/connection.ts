/** The PostgreSQL connection rules live in src/postgres/ (shared by the PostgreSQL source and destination). */
export * from '../../postgres/connection.js';
