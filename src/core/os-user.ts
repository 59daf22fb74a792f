import { userInfo } from 'node:os';

/** Who runs sluice, for the audit rows: $USER, $LOGNAME, else the account of the process (a container may set neither). */
export function osUser(): string | null {
  const fromEnv = process.env.USER || process.env.LOGNAME;
  if (fromEnv) return fromEnv;
  try {
    return userInfo().username || null;
  } catch {
    return null;
  }
}
