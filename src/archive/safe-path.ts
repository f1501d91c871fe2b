/**
 * Ids chosen by callers become file and object-key path segments only through here: percent-encoded
 * (no `/`), a dot-only id encoded whole (no `.` or `..`), and every resolved path checked to stay
 * inside its root.
 */
import { resolve, sep } from 'node:path';

export function pathSegment(id: string): string {
  if (id === '') throw new RangeError('an empty id cannot name a path');
  return /^\.+$/.test(id) ? '%2E'.repeat(id.length) : encodeURIComponent(id);
}

export class PathEscapeError extends Error {
  override name = 'PathEscapeError';
}

/** `root/…segments`, resolved; throws when the result would not lie strictly inside `root`. */
export function insideRoot(root: string, ...segments: string[]): string {
  const base = resolve(root);
  const path = resolve(base, ...segments);
  if (!path.startsWith(base + sep)) throw new PathEscapeError(`${segments.join('/')} escapes ${base}`);
  return path;
}
