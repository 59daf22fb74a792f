/**
 * The replica server_id sluice registers under: the capture's fence. MariaDB cuts off a replica when
 * another one connects with the same server_id, so sluice refuses an id in use instead of stealing it.
 */
import { SluiceError } from '../../core/errors.js';

/**
 * Refuses a server_id that the source itself has, or that another replica is registered under.
 * A replica registered under our own `replicaName` is our own previous connection (its dump thread
 * outlives a crash): MariaDB replaces it when we connect. SHOW SLAVE HOSTS needs REPLICATION MASTER
 * ADMIN; without it only the source's own id is checked.
 */
export async function checkServerId(q: <T>(sql: string) => Promise<T>, serverId: number, replicaName: string): Promise<void> {
  if (!Number.isInteger(serverId) || serverId < 1 || serverId > 0xffffffff) {
    throw new SluiceError('BAD_USAGE', `source.serverId ${serverId}: must be an integer from 1 to 4294967295, unique among the source's replicas`);
  }
  const [{ id }] = await q<{ id: string | number }[]>('SELECT @@server_id AS id');
  if (Number(id) === serverId) {
    throw new SluiceError('SLOT_IN_USE', `source.serverId ${serverId} is the source server's own server_id: set source.serverId to a number no server or replica of this source uses`);
  }
  let hosts: { Server_id: string | number; Host: string }[] = [];
  try {
    hosts = await q('SHOW SLAVE HOSTS');
  } catch {
    return;
  }
  const other = hosts.find((h) => Number(h.Server_id) === serverId && h.Host !== replicaName);
  if (other) {
    throw new SluiceError(
      'SLOT_IN_USE',
      `source.serverId ${serverId} is already used by the replica ${JSON.stringify(other.Host)} (SHOW SLAVE HOSTS): a second one would cut it off. Set source.serverId to a number no server or replica of this source uses`,
    );
  }
}
