/**
 * The layering of src/ (issue 20), checked by `npm run check` (npm run deps). Each layer may import
 * its own and the layers below it, never one above: a back-arrow fails with the rule's name, which
 * says which layer imported which. Type-only imports count (tsPreCompilationDeps), and no import
 * cycle is allowed, of any kind.
 *
 * Bottom to top:
 *   base        errors, redact, version, util/, config/types.ts (the types every layer shares)
 *   logger      logger.ts
 *   drivers     pg/ (the program runner, connections, catalog), storage/ (local, S3: bytes only),
 *               compress/, crypto/, digest/, dump/, lock/
 *   pipeline    pipeline/ (the codecs: how stored bytes are written and read back)
 *   domain      repository/ (manifests, backups on targets, the fan-out), state/ (what each
 *               database's runs left: last success, failures), retention/, scheduler/, notify/,
 *               wal/ (WAL files and the point-in-time archive on one target)
 *   config      config/ (reading the configuration; its types are in base)
 *   app         app.ts (what a use case is given: the settings, one database, its targets, the
 *               alerter, the programs)
 *   use cases   backup/, restore/, pitr/ (wal-push, wal-fetch, base backups, recovery)
 *   monitor     monitor/ (what the checks, metrics, the status page and the summary see of every
 *               database: observations, findings)
 *   daemon      daemon/
 *   cli         cli/ (the only door in)
 */
const LAYERS = [
  ['base', ['src/errors\\.ts$', 'src/redact\\.ts$', 'src/version\\.ts$', 'src/util/', 'src/config/types\\.ts$']],
  ['logger', ['src/logger\\.ts$']],
  ['drivers', ['src/pg/', 'src/storage/', 'src/compress/', 'src/crypto/', 'src/digest/', 'src/dump/', 'src/lock/']],
  ['pipeline', ['src/pipeline/']],
  ['domain', ['src/repository/', 'src/state/', 'src/retention/', 'src/scheduler/', 'src/notify/', 'src/wal/']],
  ['config', ['src/config/(?!types\\.ts$)']],
  ['app', ['src/app\\.ts$']],
  ['use-cases', ['src/backup/', 'src/restore/', 'src/pitr/']],
  ['monitor', ['src/monitor/']],
  ['daemon', ['src/daemon/']],
  ['cli', ['src/cli/']],
];

const pattern = (paths) => `^(${paths.join('|')})`;

const layering = LAYERS.flatMap(([name, paths], i) => {
  const above = LAYERS.slice(i + 1);
  if (above.length === 0) return [];
  return [
    {
      name: `${name}-imports-upward`,
      comment: `${name} (${paths.join(', ')}) may import only itself and the layers below it, not ${above.map(([n]) => n).join(', ')}: move the shared part down, or pass it in (see .dependency-cruiser.cjs)`,
      severity: 'error',
      from: { path: pattern(paths) },
      to: { path: pattern(above.flatMap(([, p]) => p)) },
    },
  ];
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'an import cycle (type-only imports included): break it by moving what both need into a lower layer',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'storage-drivers-only',
      comment: 'storage/ holds the drivers (bytes in and out of a place); the domain that uses them is repository/',
      severity: 'error',
      from: { path: '^src/storage/' },
      to: { path: '^src/(pipeline|repository)/' },
    },
    ...layering,
    {
      name: 'src-imports-no-tests',
      comment: 'src/ must not import from test/, bench/ or scripts/',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|scripts)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
