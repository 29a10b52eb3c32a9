import { describe, expect, it } from 'vitest';
import { clipBytes, fitName } from '../../src/pg/names';
import { restoreDbName } from '../../src/restore/restore';

describe('names restore gives new databases', () => {
  it('generated names fit in 63 bytes, cutting the database name by whole characters', () => {
    const stamp = '20261201t100000z';
    expect(restoreDbName('webserver_db', 'restored', stamp)).toBe('webserver_db_restored_20261201t100000z');
    expect(restoreDbName('webserver_db', 'tables', stamp, 3)).toBe('webserver_db_tables_20261201t100000z_3');
    const live = 'a'.repeat(40);
    for (const kind of ['restored', 'before_restore', 'tables'] as const) {
      for (const n of [1, 2, 12]) {
        const name = restoreDbName(live, kind, stamp, n);
        expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
        expect(name.endsWith(`_${kind}_${stamp}${n > 1 ? `_${n}` : ''}`)).toBe(true);
        expect(live.startsWith(name.slice(0, name.indexOf(`_${kind}_`)))).toBe(true);
      }
    }
    expect(restoreDbName('a'.repeat(40), 'before_restore', stamp)).toBe(`${'a'.repeat(31)}_before_restore_${stamp}`);
    const multi = restoreDbName('ü'.repeat(30), 'restored', stamp);
    expect(multi).toBe(`${'ü'.repeat(18)}_restored_${stamp}`);
    expect(Buffer.byteLength(multi)).toBe(62);
    expect(clipBytes('aü', 2)).toBe('a');
    expect(fitName('db', '_x')).toBe('db_x');
  });
});
