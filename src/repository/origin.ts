/** Which PostgreSQL server a backup was taken on: restore and drills refuse a backup from another one unless told. */
export interface ServerOrigin {
  /**
   * The cluster's system identifier (`pg_control_system()`), as text. Absent in backups taken
   * before it was recorded, and when the backup role may not read it: such a backup is not checked.
   */
  system_identifier?: string;
}
