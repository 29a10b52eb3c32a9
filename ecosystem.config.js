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
      // 64 KB buffers, and this returns their memory promptly (peak RSS ~75-90 MB instead of ~130).
      node_args: ['--max-semi-space-size=1'],
      cwd: __dirname,
      instances: 1,
      exec_mode: 'fork',
      autorestart: true,
      // The daemon says "ready" once it has scheduled its first run.
      wait_ready: true,
      listen_timeout: 30000,
      // Longer than SHUTDOWN_GRACE_SECONDS (default 30 s), so a running backup can finish or clean up.
      kill_timeout: 45000,
      // Exit code 2 is a configuration error: restarting cannot fix it (and would mail an alert
      // on every restart). pm2 leaves the app stopped; fix the setting and `pm2 restart`.
      stop_exit_codes: [2],
      restart_delay: 5000,
      exp_backoff_restart_delay: 1000,
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
