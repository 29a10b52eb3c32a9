/** The options every command inherits from the program. */
export interface GlobalOpts {
  envFile: string[];
  /** `--db NAME`: the database (of BACKUP_CONFIG_FILE's `databases:`) the command is about. */
  db?: string;
}
