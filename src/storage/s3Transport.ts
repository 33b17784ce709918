import http from 'node:http';
import https from 'node:https';
import { ServerTroubleError, StoreTimeoutError } from './retry.js';

// An error answer's body is a short XML document; more than this is not read for its code.
const MAX_ERROR_BODY = 64 * 1024;

/**
 * The minio client's transport (http.request), so that retries can tell what went wrong:
 * - an answer with a 5xx or 429 status fails the request with a ServerTroubleError that keeps
 *   the status (the client's own error has only the body's code, and a HEAD answer or a
 *   proxy's HTML page has none);
 * - a request that receives nothing for timeoutMs is abandoned with a StoreTimeoutError.
 */
export function troubleAwareTransport(useSSL: boolean, timeoutMs: number): Pick<typeof http, 'request'> {
  const base = useSSL ? https : http;
  const request = (options: http.RequestOptions, callback?: (res: http.IncomingMessage) => void): http.ClientRequest => {
    const req = base.request({ ...options, timeout: timeoutMs }, (res) => {
      const status = res.statusCode ?? 0;
      if (status < 500 && status !== 429) {
        callback?.(res);
        return;
      }
      void errorCode(res).then((code) => req.emit('error', new ServerTroubleError(status, code)));
    });
    req.on('timeout', () => req.destroy(new StoreTimeoutError(timeoutMs)));
    return req;
  };
  return { request: request as typeof http.request };
}

/** The <Code> of an S3 error answer, if it has one. */
async function errorCode(res: http.IncomingMessage): Promise<string | undefined> {
  let text = '';
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      if (text.length < MAX_ERROR_BODY) text += chunk.toString('utf8');
    }
  } catch {
    // A cut error answer is still the status it said.
  }
  return /<Code>([A-Za-z0-9_.-]{1,64})<\/Code>/.exec(text)?.[1];
}
