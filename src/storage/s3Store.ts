import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { XMLParser } from 'fast-xml-parser';
import { Client, S3Error } from 'minio';
import type { NotifyTarget, StoreConfig } from '../config.js';
import type { ObjectInfo, ObjectStore, ReadHint } from './objectStore.js';
import { ObjectNotFoundError, ObjectUnreadableError } from './objectStore.js';
import { notificationConfig } from './notifications.js';
import { AnswerCutError, Retrier, resumingBody } from './retry.js';
import type { StoreOptions, StoreOutcome } from './retryPolicy.js';
import { DEFAULT_RETRY_POLICY } from './retryPolicy.js';
import { troubleAwareTransport } from './s3Transport.js';

export type S3Options = Omit<Extract<StoreConfig, { kind: 's3' }>, 'kind'>;

// Streams of unknown length are uploaded in parts of this size, so this bounds the memory an
// upload of output.csv holds. 5 MiB is the S3 minimum.
const PART_SIZE = 16 * 1024 * 1024;
// A health check must answer within 3 s (http/routes/health.ts): ping stops retrying sooner.
const PING_MAX_MS = 2_000;

const NOT_FOUND_CODES = new Set(['NoSuchKey', 'NotFound', 'NoSuchObject']);
// What MinIO answers (400) for a key, or a listing prefix, with a "." or ".." part or "//", or
// too long: no object can have that name, so a lookup of it finds none.
const INVALID_NAME_CODES = new Set(['XMinioInvalidObjectName', 'InvalidObjectName', 'KeyTooLongError', 'InvalidArgument']);
const ALREADY_EXISTS_CODES = new Set(['BucketAlreadyOwnedByYou', 'BucketAlreadyExists']);
// Answers about one object that say nothing about the server as a whole.
const OBJECT_ERROR_CODES = new Set(['AccessDenied', 'InvalidObjectState', 'InvalidRange', 'KeyTooLongError', 'InvalidArgument']);

// Keys stay exactly as sent: text, not numbers ("0x10", "1.50"), untrimmed ("  a.csv"), and
// entities decoded once by xmlText (the parser's own decoding also expands HTML entities).
const listParser = new XMLParser({
  parseTagValue: false,
  trimValues: false,
  processEntities: false,
  isArray: (name) => name === 'Contents',
});
const XML_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Decodes XML's five entities and character references, in one pass. */
function xmlText(v: XmlText): string {
  return String(v ?? '').replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, name: string) => {
    if (name[0] !== '#') return XML_ENTITIES[name] ?? whole;
    const cp = name[1] === 'x' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : whole;
  });
}

/**
 * Any S3-compatible server through the `minio` client: MinIO, AWS S3, Garage, SeaweedFS.
 * Path-style addressing, because self-hosted servers rarely have wildcard DNS for buckets.
 * Its listings, look-ups, reads, writes, bucket checks and notification setup are retried when
 * they fail for a transient reason (src/storage/retry.ts).
 */
export class S3Store implements ObjectStore {
  readonly description: string;
  private readonly client: Client;
  private readonly retrier: Retrier;

  constructor(
    private readonly opts: S3Options,
    store: StoreOptions = {},
  ) {
    const policy = store.retry ?? DEFAULT_RETRY_POLICY;
    this.retrier = new Retrier(policy, store.observer, answerOf);
    this.description = `s3:${opts.useSSL ? 'https' : 'http'}://${opts.endPoint}:${opts.port}`;
    this.client = new Client({
      endPoint: opts.endPoint,
      port: opts.port,
      useSSL: opts.useSSL,
      accessKey: opts.accessKey,
      secretKey: opts.secretKey,
      region: opts.region,
      pathStyle: true,
      partSize: PART_SIZE,
      // Ours retries instead: the client's own (one retry of a 5xx) loses the error's code.
      retryOptions: { disableRetry: true },
      transport: troubleAwareTransport(opts.useSSL, policy.requestTimeoutMs),
    });
  }

  async ensureBucket(bucket: string): Promise<void> {
    await this.retrier.run('bucket', async () => {
      if (await this.client.bucketExists(bucket)) return;
      try {
        await this.client.makeBucket(bucket, this.opts.region);
      } catch (err) {
        // Another instance created it between our check and our request.
        if (err instanceof S3Error && ALREADY_EXISTS_CODES.has(err.code ?? '')) return;
        throw err;
      }
    });
  }

  async ping(bucket: string): Promise<void> {
    // HEAD on our own bucket: works with credentials limited to the two buckets, unlike ListBuckets.
    const exists = await this.retrier.run('bucket', () => this.client.bucketExists(bucket), { maxTotalMs: PING_MAX_MS });
    if (!exists) throw new Error(`bucket ${bucket} does not exist`);
  }

  /**
   * ListObjectsV2, page by page. Keys are asked for URL-encoded (encoding-type=url), which is
   * the only way a key with characters XML cannot carry survives the listing, and decoded
   * only when the server says it encoded them: some S3-compatible servers ignore the
   * parameter, and decoding a raw key such as "100%.csv" would fail the whole listing.
   * A page that fails is asked for again with the same token: the listing goes on, never restarts.
   */
  async *list(bucket: string, prefix = ''): AsyncIterable<ObjectInfo> {
    let token = '';
    for (;;) {
      const query = ['encoding-type=url', 'list-type=2', 'max-keys=1000'];
      if (prefix) query.push(`prefix=${rfc3986(prefix)}`);
      if (token) query.unshift(`continuation-token=${rfc3986(token)}`);
      const page = await this.retrier.run('list', async () => {
        const res = await this.client.makeRequestAsync({ method: 'GET', bucketName: bucket, query: query.join('&') });
        return parseListPage(await readBody(res));
      }).catch((err: unknown) => {
        // A prefix MinIO refuses as an object name (a ".." part): no object has it.
        if (prefix && !token && isInvalidName(err)) return null;
        throw err;
      });
      if (!page) return;
      yield* page.objects;
      if (!page.truncated) return;
      if (!page.nextToken) throw new Error('the server cut the listing short without a continuation token');
      token = page.nextToken;
    }
  }

  async stat(bucket: string, key: string): Promise<ObjectInfo | null> {
    return this.retrier.run('stat', async () => {
      try {
        const st = await this.client.statObject(bucket, key);
        return { key, size: st.size, etag: normalizeEtag(st.etag), lastModified: st.lastModified };
      } catch (err) {
        if (isNotFound(err) || isInvalidName(err)) return null;
        throw err;
      }
    });
  }

  /**
   * Points the bucket's notifications of created and removed objects at a target the server
   * knows: a MinIO queue, or an SNS topic on radosgw and AWS (see notificationConfig).
   * Replaces the bucket's notification setup (on radosgw: the notification with this Id).
   */
  async notifyTo(bucket: string, target: NotifyTarget): Promise<void> {
    // Setting the same configuration again changes nothing: safe to retry.
    await this.retrier.run('notify', () => this.client.setBucketNotification(bucket, notificationConfig(target)));
  }

  /**
   * A listing from the key on: HEAD would give Last-Modified in whole seconds, which would not
   * match the fingerprint the listing recorded. Keys that start with this one (a.csv.bak) may
   * come too, so the first page is searched; past it, HEAD answers (an event may then read
   * the object once more than needed).
   */
  async head(bucket: string, key: string): Promise<ObjectInfo | null> {
    let seen = 0;
    try {
      for await (const info of this.list(bucket, key)) {
        if (info.key === key) return info;
        if (++seen >= 1000) return await this.stat(bucket, key);
      }
    } catch (err) {
      // A forged event key MinIO refuses as a prefix is no object, not a rejected file.
      if (isInvalidName(err)) return null;
      throw err;
    }
    return null;
  }

  /**
   * A read cut mid-body goes on from where it stopped, with a Range request for the rest of
   * the same object (If-Match its etag): an object that changed meanwhile is not spliced. Its
   * length is the first answer's Content-Length, or else the listing's size: it tells a cut
   * answer from a whole one, whether or not the connection failed.
   */
  async read(bucket: string, key: string, hint: ReadHint = {}): Promise<Readable> {
    let first: IncomingMessage;
    try {
      first = await this.retrier.run('read', () => objectRequest(bucket, key, this.client.getObject(bucket, key)), { counted: false });
    } catch (err) {
      this.retrier.ended('read', this.retrier.outcomeOf(err));
      throw err;
    }
    const etag = first.headers.etag;
    const sent = Number(first.headers['content-length'] ?? NaN);
    const length = Number.isSafeInteger(sent) && sent >= 0 ? sent : hint.size;
    return resumingBody(
      first,
      this.retrier,
      async (offset) => {
        const headers: Record<string, string> = { range: `bytes=${offset}-`, ...(etag ? { 'if-match': etag } : {}) };
        let rest: IncomingMessage;
        try {
          rest = await objectRequest(bucket, key, this.client.makeRequestAsync({ method: 'GET', bucketName: bucket, objectName: key, headers }, '', [206]));
        } catch (err) {
          // No length was known and the cut came after the last byte: the server has nothing
          // past it to send (416). The read is whole if the object is still the one read (the
          // header's etag is quoted, stat's is not).
          if (length === undefined && err instanceof ObjectUnreadableError) {
            const now = await this.stat(bucket, key).catch(() => null);
            if (now && now.etag === etag?.replace(/"/g, '') && now.size === offset) return Readable.from([]);
          }
          throw err;
        }
        // Some servers ignore If-Match (s3rver does).
        if (rest.headers.etag !== etag) {
          rest.destroy();
          throw new ObjectUnreadableError(key, 'it changed while it was read');
        }
        return rest;
      },
      length,
    );
  }

  async write(bucket: string, key: string, body: Readable | Buffer, contentType = 'application/octet-stream'): Promise<void> {
    const meta = { 'Content-Type': contentType };
    // An S3 PUT (single or multipart) becomes visible only once complete: readers never see a part.
    if (Buffer.isBuffer(body)) {
      await this.retrier.run('write', () => this.client.putObject(bucket, key, body, body.length, meta));
      return;
    }
    // A stream of unknown length makes the client size parts for a 5 TiB object (about 550 MB
    // each, held in memory) and resume whatever unfinished upload of the key it finds, even
    // another writer's. Spooling to a temp file gives a known size: one PUT up to PART_SIZE,
    // PART_SIZE parts beyond. And a failed upload can be sent again from the file.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'userjoin-upload-'));
    try {
      const file = path.join(dir, 'body');
      await pipeline(body, createWriteStream(file));
      const { size } = await fs.stat(file);
      // Beyond PART_SIZE the client uploads in parts, and a retry resumes the key's latest
      // unfinished upload (findUploadId): under the export lock that is the failed try's own,
      // and the client sends every part again (minio 8.0.7 never matches an old part), so the
      // object is whole. Should another writer share the upload, CompleteMultipartUpload's
      // check of the parts' ETags fails the request rather than mix the two.
      await this.retrier.run('write', async () => {
        const upload = createReadStream(file);
        try {
          await this.client.putObject(bucket, key, upload, size, meta);
        } finally {
          upload.destroy();
        }
      }).catch(async (err: unknown) => {
        // An upload that gave up leaves its parts stored (and billed) until aborted.
        if (size > PART_SIZE) await this.client.removeIncompleteUpload(bucket, key).catch(() => undefined);
        throw err;
      });
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
}

interface ListPage {
  objects: ObjectInfo[];
  truncated: boolean;
  nextToken: string;
}

type XmlText = string | number | boolean | undefined;
interface XmlContents {
  Key?: XmlText;
  Size?: XmlText;
  ETag?: XmlText;
  LastModified?: XmlText;
}

/** One ListObjectsV2 page. A key this cannot decode is reported on its own, never fatal. */
export function parseListPage(xml: string): ListPage {
  const doc = listParser.parse(xml) as { ListBucketResult?: Record<string, unknown> };
  const r = doc.ListBucketResult;
  if (!r) throw new Error('the server answered a listing without ListBucketResult');
  const encoded = xmlText(r.EncodingType as XmlText).toLowerCase() === 'url';
  const objects = ((r.Contents ?? []) as XmlContents[]).map((c): ObjectInfo => {
    const raw = xmlText(c.Key);
    const info: ObjectInfo = {
      key: raw,
      size: Number(c.Size ?? 0),
      etag: normalizeEtag(xmlText(c.ETag)),
      lastModified: c.LastModified === undefined ? new Date(0) : new Date(xmlText(c.LastModified)),
    };
    if (!encoded) return info;
    try {
      // The S3 "url" encoding is form encoding: a space may come as "+", a "+" as "%2B".
      return { ...info, key: decodeURIComponent(raw.replace(/\+/g, ' ')) };
    } catch {
      return { ...info, problem: 'the server listed its key in an encoding that cannot be decoded' };
    }
  });
  return {
    objects,
    truncated: xmlText(r.IsTruncated as XmlText).toLowerCase() === 'true',
    nextToken: xmlText(r.NextContinuationToken as XmlText),
  };
}

async function readBody(stream: AsyncIterable<Buffer | string>): Promise<string> {
  const chunks: Buffer[] = [];
  try {
    for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  } catch (err) {
    throw new AnswerCutError(err);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A GET of one object, its refusals as the ObjectStore contract names them. */
async function objectRequest(bucket: string, key: string, request: Promise<Readable>): Promise<IncomingMessage> {
  try {
    return (await request) as IncomingMessage;
  } catch (err) {
    if (isNotFound(err)) throw new ObjectNotFoundError(bucket, key);
    if (err instanceof S3Error && err.code === 'PreconditionFailed') throw new ObjectUnreadableError(key, 'it changed while it was read', { cause: err });
    if (err instanceof S3Error && OBJECT_ERROR_CODES.has(err.code ?? '')) {
      throw new ObjectUnreadableError(key, `the server refused to send it (${err.code})`, { cause: err });
    }
    throw err;
  }
}

/** For the store metrics: an answer about one object, which no retry changes. */
function answerOf(err: unknown): StoreOutcome | null {
  if (err instanceof ObjectNotFoundError) return 'not_found';
  return err instanceof ObjectUnreadableError ? 'refused' : null;
}

/** Query-string escaping as SigV4 expects it: encodeURIComponent leaves !'()* alone. */
function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function normalizeEtag(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}

function isNotFound(err: unknown): boolean {
  return err instanceof S3Error && NOT_FOUND_CODES.has(err.code ?? '');
}

function isInvalidName(err: unknown): boolean {
  return err instanceof S3Error && INVALID_NAME_CODES.has(err.code ?? '');
}
