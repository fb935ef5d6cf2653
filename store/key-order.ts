/**
 * S3 lists keys in UTF-8 byte order; JavaScript's default sort uses UTF-16 code units, which differs for
 * characters beyond the BMP. Both stores sort with this so list() means the same everywhere.
 */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function sortKeys(keys: string[]): string[] {
  return keys.sort(compareKeys);
}
