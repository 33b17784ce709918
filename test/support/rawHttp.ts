import http from 'node:http';
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * One request through node:http, which (unlike fetch) lets a test set Host and Origin as a
 * browser on another site, or a DNS-rebinding page, would send them. localAddress sends it from
 * another client address: on Linux any 127.x.x.x reaches a server on 127.0.0.1.
 */
export function raw(url: string, path: string, opts: { method?: string; headers?: Record<string, string>; localAddress?: string } = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const request = { host: hostname, port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: false, localAddress: opts.localAddress };
    const req = http.request(request, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A request on a bare socket, for what node:http will not send (HTTP/1.0 without Host). */
export function rawSocket(url: string, request: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.write(request));
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    socket.on('error', reject);
    socket.on('close', () => resolve(data));
  });
}

/** Resolves when the socket closes; fails the test if that takes longer than ms. */
export function closedWithin(socket: net.Socket, ms: number): Promise<number> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve(0);
    const deadline = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(deadline);
      resolve(Date.now() - start);
    });
  });
}
