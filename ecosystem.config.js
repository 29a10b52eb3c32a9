// pm2 start ecosystem.config.js  — runs the backup daemon beside the app.
// Settings come from .env in this directory, or from the files named in BACKUP_ENV_FILE
// (e.g. the app's own ~/server-ui/.env, so the database password is not copied).
module.exports = {
  apps: [
    {
      name: 'basement-backup',
      script: 'dist/src/cli/main.js',
      args: 'daemon',
      // Small young-generation semi-spaces: a backup streams hundreds of MB through short-lived
      // 64 KB buffers, and this returns their memory promptly (measured: a backup's peak RSS near
      // 120 MB whatever the database's size; bench/README.md).
      node_args: ['--max-semi-space-size=1'],
      cwd: __dirname,
      instances: 1,
      exec_mode: 'fork',
      autorestart: true,
      // The daemon says "ready" as soon as it has scheduled its first run (it waits on nothing).
      wait_ready: true,
      listen_timeout: 30000,
      // pm2 signals only the daemon, not its children: the daemon owns pg_dump and lets a running
      // backup finish (or stops it and removes the partial file) on `pm2 stop`/`pm2 restart`.
      // pm2's default tree-kill would kill pg_dump at once and fail the backup.
      treekill: false,
      // Longer than SHUTDOWN_GRACE_SECONDS (default 30 s) plus the 5 s the daemon gives an aborted
      // backup to clean up, so pm2 does not SIGKILL a daemon that is still finishing.
      kill_timeout: 45000,
      // Exit code 2 is a configuration error: restarting cannot fix it (and would mail an alert
      // on every restart). pm2 leaves the app "stopped"; fix the setting and `pm2 restart`.
      // (No restart_delay or exp_backoff_restart_delay: with either, pm2 7 shows such an app as
      // "waiting restart" for ever instead.)
      stop_exit_codes: [2],
      // A daemon that crashes within 10 s of starting, 5 times in a row, is left "errored"
      // rather than restarted (and mailing) in a loop; `pm2 logs` shows why.
      min_uptime: 10000,
      max_restarts: 5,
      max_memory_restart: '300M',
      out_file: 'logs/pm2-out.log',
      error_file: 'logs/pm2-error.log',
      merge_logs: true,
      time: false,
      env: {
        NODE_ENV: 'production',
      },
    },
  ],
};
