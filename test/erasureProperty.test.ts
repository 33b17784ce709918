import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { versionOf } from '../src/core/model.js';
import { createTestDatabase } from './support/database.js';
import { makeImage, put, remove, userCsv } from './support/fixtures.js';
import { startTestService } from './support/service.js';
import { startS3Backend } from './support/stores.js';

// After any sequence of runs, erasures, file edits and deletes, the table equals what the rules
// say (docs/operations.md#erasure). The model below is those rules, written out: it never asks the
// service what it did, only the store what a file's version is (etag, size, modification time).
// s3rver, whose etag is the content's, so a put of the same bytes is the same version.

const USERS = ['a', 'b'] as const;
type UserId = (typeof USERS)[number];
type Op =
  | { op: 'putCsv' | 'putPng' | 'delCsv' | 'delPng' | 'erase'; user: UserId }
  | { op: 'run'; full: boolean };

interface Version {
  etag: string;
  size: number;
  lm: number;
  name?: string;
}
interface Stone {
  versions: Set<string>;
  erasedAt: number;
}

// Mostly one user, and erasures and runs often, so that erasing, putting back and rereading meet.
const userArb = fc.oneof({ weight: 3, arbitrary: fc.constant<UserId>('a') }, { weight: 1, arbitrary: fc.constant<UserId>('b') });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('putCsv' as const), user: userArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('putPng', 'erase' as const), user: userArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('delCsv', 'delPng' as const), user: userArb }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('run' as const), full: fc.boolean() }) },
);

describe('erasure rules, as a property', () => {
  it.each(['keep', 'erase'] as const)('ON_SOURCE_DELETE=%s: after any sequence, the table is what the rules say', async (policy) => {
    const backend = await startS3Backend();
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 3 }), async (ops, pngSeed) => {
          const db = await createTestDatabase();
          const svc = await startTestService(backend, db, { ...backend.env, ON_SOURCE_DELETE: policy, SRC_BUCKET: `src${Math.random().toString(36).slice(2, 10)}` });
          try {
            const bucket: Record<string, Version | undefined> = {};
            let recorded: Record<string, Version | undefined> = {};
            const table = new Map<UserId, { name: string; photo: boolean }>();
            const stones = new Map<UserId, Stone>();
            let n = 0;
            const versionNow = async (key: string, name?: string): Promise<Version> => {
              const info = (await backend.store.stat(svc.srcBucket, key))!;
              return { etag: info.etag, size: info.size, lm: info.lastModified.getTime(), name };
            };
            const blocked = (u: UserId, v: Version) => {
              const s = stones.get(u);
              return s !== undefined && (s.versions.has(versionOf(v.etag, v.size)) || v.lm <= s.erasedAt);
            };
            const tombstone = (u: UserId, erasedAt: number, versions: Array<Version | undefined>) => {
              const s = stones.get(u) ?? { versions: new Set<string>(), erasedAt: Number.NEGATIVE_INFINITY };
              for (const v of versions) if (v) s.versions.add(versionOf(v.etag, v.size));
              s.erasedAt = Math.max(s.erasedAt, erasedAt);
              stones.set(u, s);
            };
            const erasedAtOf = async (u: UserId) => {
              const res = await svc.get(`/erasures?user_id=${u}`);
              const rows = ((await res.json()) as { data: Array<{ erased_at: string }> }).data;
              return Date.parse(rows[rows.length - 1]!.erased_at);
            };

            for (const o of [...ops, { op: 'run', full: false } as const]) {
              if (o.op === 'run') {
                const res = await svc.post(`/data?wait=true${o.full ? '&full=true' : ''}`);
                expect(res.status).toBe(200);
                for (const u of USERS) {
                  const csv = bucket[`${u}.csv`];
                  const png = bucket[`${u}.png`];
                  if (csv && !blocked(u, csv)) table.set(u, { name: csv.name!, photo: png !== undefined && !blocked(u, png) });
                  else if (!csv && recorded[`${u}.csv`] && policy === 'erase' && table.has(u)) {
                    // Its last CSV went: erased, with the version of that CSV recorded until now
                    // tombstoned (by key), and no rule on modification times.
                    table.delete(u);
                    expect(await erasedAtOf(u)).toBeGreaterThan(0);
                    tombstone(u, Number.NEGATIVE_INFINITY, [recorded[`${u}.csv`]]);
                  }
                }
                recorded = { ...bucket };
                const rows = ((await (await svc.get('/data')).json()) as { data: Array<{ user_id: UserId; first_name: string; img_path: string | null }> }).data;
                expect(rows.map((r) => [r.user_id, r.first_name, r.img_path !== null])).toEqual([...table].sort(([x], [y]) => x.localeCompare(y)).map(([u, r]) => [u, r.name, r.photo]));
              } else if (o.op === 'erase') {
                const res = await fetch(`${svc.url}/data/${o.user}`, { method: 'DELETE' });
                if (table.has(o.user)) {
                  expect(res.status).toBe(200);
                  const body = (await res.json()) as { erasure: { erased_at: string }; already_erased: boolean };
                  expect(body.already_erased).toBe(false);
                  table.delete(o.user);
                  tombstone(o.user, Date.parse(body.erasure.erased_at), [recorded[`${o.user}.csv`], recorded[`${o.user}.png`]]);
                } else {
                  expect([200, 404]).toContain(res.status);
                }
              } else {
                const key = `${o.user}.${o.op.endsWith('Csv') ? 'csv' : 'png'}`;
                if (o.op.startsWith('del')) {
                  await remove(backend, svc.srcBucket, key);
                  bucket[key] = undefined;
                } else if (o.op === 'putCsv') {
                  const name = `N${++n}`;
                  await put(backend, svc.srcBucket, key, userCsv(name, 'L', n));
                  bucket[key] = await versionNow(key, name);
                } else {
                  // A few photos only, so a put of the same bytes happens.
                  await put(backend, svc.srcBucket, key, await makeImage('png', 8 + ((++n + pngSeed) % 3), 8));
                  bucket[key] = await versionNow(key);
                }
              }
            }
          } finally {
            await svc.stop(0);
            await db.drop();
          }
        }),
        { numRuns: 15 },
      );
    } finally {
      await backend.stop();
    }
  }, 300_000);
});
