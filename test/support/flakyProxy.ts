import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { random } from './people.js';

/**
 * What the proxy does to one request instead of passing it on:
 * - slow_down: answers 503 SlowDown, as S3 under load does;
 * - access_denied: answers 403 AccessDenied, as a bucket policy that denies the object does;
 * - invalid_name: answers 400 XMinioInvalidObjectName, as MinIO does to a key or listing prefix
 *   with a "." or ".." part or "//";
 * - cut: passes it on, sends the answer's headers (with the full Content-Length) and part of
 *   its body, then closes the connection; an answer without a body is reset instead;
 * - cut_after_body: passes it on and sends the answer chunked (no Content-Length) with its
 *   whole body, then closes the connection before the last (empty) chunk;
 * - end_early: passes it on and sends the answer without Content-Length or chunking, with
 *   half its body, then closes the connection cleanly: to the client, a whole answer;
 * - reset: closes the connection without answering;
 * - stall: holds the request without answering until release() (passes it on) or until the
 *   client gives up and closes the connection.
 */
export type Fault = 'slow_down' | 'access_denied' | 'invalid_name' | 'cut' | 'cut_after_body' | 'end_early' | 'reset' | 'stall';

export interface ProxiedRequest {
  method: string;
  /** Path and query as sent, e.g. /bucket/key?x=1. */
  url: string;
  /** The Range header, when the request had one. */
  range?: string;
  /** The If-Match header, when the request had one. */
  ifMatch?: string;
  fault: Fault | null;
  /** stall only: set when the client closed the connection of the held request. */
  abandoned?: boolean;
}

export interface FlakyProxyOptions {
  /** The real S3 server behind the proxy. */
  target: { host: string; port: number };
  /** Share of requests answered 503 SlowDown. */
  slowDownRate?: number;
  /** Share of answers cut (mid-body, or reset when they have no body). */
  cutRate?: number;
  /** Seed of the pseudo-random choice of requests, for a reproducible mix. */
  seed?: number;
}

/**
 * A real HTTP proxy on 127.0.0.1 in front of an S3 server, which injects faults: a seeded
 * pseudo-random share of requests, and those a test's rule picks. It logs every request and
 * counts what it injected, so a test can check that faults really happened.
 */
export class FlakyProxy {
  readonly requests: ProxiedRequest[] = [];
  readonly injected = { slowDown: 0, accessDenied: 0, invalidName: 0, cut: 0, cutAfterBody: 0, endEarly: 0, reset: 0, stall: 0 };
  slowDownRate: number;
  cutRate: number;
  /** A test's own faults: looked at first, for each request; null leaves it to chance. */
  rule: ((req: { method: string; url: URL; range?: string }) => Fault | null) | null = null;
  private readonly next: () => number;
  private readonly agent = new http.Agent({ keepAlive: true });
  private readonly sockets = new Set<Socket>();
  private readonly held: Array<() => void> = [];

  private constructor(
    private readonly server: http.Server,
    private readonly opts: FlakyProxyOptions,
  ) {
    this.slowDownRate = opts.slowDownRate ?? 0;
    this.cutRate = opts.cutRate ?? 0;
    this.next = random(opts.seed ?? 1);
    server.on('request', (req, res) => this.handle(req, res));
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  static async start(opts: FlakyProxyOptions): Promise<FlakyProxy> {
    const server = http.createServer();
    const proxy = new FlakyProxy(server, opts);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Back to passing everything on, with an empty log and counts. */
  reset(): void {
    this.requests.length = 0;
    for (const k of Object.keys(this.injected) as Array<keyof FlakyProxy['injected']>) this.injected[k] = 0;
    this.rule = null;
    this.held.length = 0;
    this.slowDownRate = 0;
    this.cutRate = 0;
  }

  /** Passes on the requests held by stall, which are still open. */
  release(): void {
    for (const pass of this.held.splice(0)) pass();
  }

  /** Requests logged whose method and URL match. */
  matching(method: string, test: (url: URL) => boolean): ProxiedRequest[] {
    return this.requests.filter((r) => r.method === method && test(new URL(r.url, 'http://proxy')));
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.agent.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private chosen(req: http.IncomingMessage, url: URL): Fault | null {
    const range = req.headers.range;
    const ruled = this.rule?.({ method: req.method ?? 'GET', url, range });
    if (ruled) return ruled;
    // One draw per request whatever the rates, so the same seed picks the same requests.
    const r = this.next();
    if (r < this.slowDownRate) return 'slow_down';
    if (r < this.slowDownRate + this.cutRate) return 'cut';
    return null;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const fault = this.chosen(req, url);
    const logged: ProxiedRequest = { method: req.method ?? 'GET', url: req.url ?? '/', range: req.headers.range, ifMatch: req.headers['if-match'], fault };
    this.requests.push(logged);
    switch (fault) {
      case 'slow_down':
        this.injected.slowDown++;
        return answerError(req, res, 503, 'SlowDown', 'Please reduce your request rate.');
      case 'access_denied':
        this.injected.accessDenied++;
        return answerError(req, res, 403, 'AccessDenied', 'Access Denied');
      case 'invalid_name':
        this.injected.invalidName++;
        return answerError(req, res, 400, 'XMinioInvalidObjectName', 'Object name contains unsupported characters.');
      case 'reset':
        this.injected.reset++;
        req.socket.destroy();
        return;
      case 'stall': {
        this.injected.stall++;
        const pass = () => {
          if (!logged.abandoned) this.forward(req, res, null);
        };
        this.held.push(pass);
        req.socket.once('close', () => {
          logged.abandoned = true;
        });
        return;
      }
      default:
        this.forward(req, res, fault);
    }
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse, fault: 'cut' | 'cut_after_body' | 'end_early' | null): void {
    const upstream = http.request(
      { host: this.opts.target.host, port: this.opts.target.port, method: req.method, path: req.url, headers: req.headers, agent: this.agent },
      (answer) => {
        const length = Number(answer.headers['content-length'] ?? 0);
        const hasBody = length > 1 && req.method !== 'HEAD';
        if (fault && !hasBody) {
          // Nothing to cut mid-body: the connection is reset instead.
          this.injected.reset++;
          answer.resume();
          req.socket.destroy();
          return;
        }
        if (fault === 'cut_after_body' || fault === 'end_early') return this.unframed(req, res, answer, fault, length);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        if (!fault) {
          answer.pipe(res);
          return;
        }
        this.injected.cut++;
        this.sendPart(req, res, answer, Math.floor(length / 2), () => req.socket.destroy());
      },
    );
    upstream.on('error', () => req.socket.destroy());
    req.pipe(upstream);
  }

  /** Sends the answer without its Content-Length: chunked and whole but unterminated, or close-delimited and half. */
  private unframed(req: http.IncomingMessage, res: http.ServerResponse, answer: http.IncomingMessage, fault: 'cut_after_body' | 'end_early', length: number): void {
    const headers = { ...answer.headers };
    delete headers['content-length'];
    delete headers['transfer-encoding'];
    delete headers.connection;
    delete headers['keep-alive'];
    if (fault === 'cut_after_body') {
      this.injected.cutAfterBody++;
      // Node sends a body without Content-Length chunked (HTTP/1.1); the final chunk comes only with end().
      res.writeHead(answer.statusCode ?? 502, headers);
      this.sendPart(req, res, answer, length, () => req.socket.destroy());
      return;
    }
    this.injected.endEarly++;
    // An HTTP/1.1 answer without Content-Length nor chunking ends when the connection closes.
    res.useChunkedEncodingByDefault = false;
    res.shouldKeepAlive = false;
    res.writeHead(answer.statusCode ?? 502, { ...headers, connection: 'close' });
    this.sendPart(req, res, answer, Math.floor(length / 2), () => res.end());
  }

  /** Writes the first `count` bytes of the answer, then calls done once they are written. */
  private sendPart(req: http.IncomingMessage, res: http.ServerResponse, answer: http.IncomingMessage, count: number, done: () => void): void {
    let left = count;
    answer.on('data', (chunk: Buffer) => {
      if (left <= 0) return;
      const part = chunk.subarray(0, left);
      left -= part.length;
      if (left > 0) {
        res.write(part);
        return;
      }
      answer.destroy();
      res.write(part, done);
    });
    answer.on('error', () => req.socket.destroy());
  }
}

function answerError(req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string, message: string): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>flaky-proxy</RequestId></Error>`;
  // The request's body (an upload) is read first, as a server does before it answers.
  req.resume();
  req.once('end', () => {
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
}
