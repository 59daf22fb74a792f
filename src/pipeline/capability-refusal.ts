/**
 * What a destination cannot do at all for a requested load, whatever its tables (its capabilities,
 * destinations/destination.ts): checked by `sluice backfill` before it records anything and by the
 * running pipeline when it accepts the request.
 */
import type { BackfillMode } from '../core/types.js';
import type { Destination } from '../destinations/destination.js';

/** A sentence naming the way through, or null. */
export function capabilityRefusal(destination: Pick<Destination, 'type' | 'capabilities'>, mode: BackfillMode): string | null {
  if (mode === 'online' && !destination.capabilities.supportsOnlineSwap) {
    return `the ${destination.type} destination cannot swap a reloaded table in while it streams (mode online); use --mode truncate, drop or upsert`;
  }
  return null;
}
