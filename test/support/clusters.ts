/**
 * Test harness clusters: the cluster manager lives in src/embedded/clusters.ts
 * (also used by `sluice demo`); tests keep importing it from here.
 */
export * from '../../src/embedded/clusters.js';
