import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';

/**
 * HTTPS in front of a local HTTP server, as a reverse proxy terminates TLS in production:
 * radosgw sends a push endpoint's credentials only over HTTPS.
 */
export interface TlsProxy {
  url: string;
  /** Requests it took, whatever became of them. */
  readonly requests: number;
  /** Where requests go: settable after start, so the proxy's address can be given first. */
  target: string;
  close(): Promise<void>;
}

export async function startTlsProxy(pemPath: string): Promise<TlsProxy> {
  const pem = await fs.readFile(pemPath);
  const state = { requests: 0, target: '' };
  const server = https.createServer({ key: pem, cert: pem }, (req, res) => {
    state.requests++;
    const to = new URL(state.target);
    const upstream = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    get requests() {
      return state.requests;
    },
    get target() {
      return state.target;
    },
    set target(url: string) {
      state.target = url;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
