/**
 * Resolves with the outcome of work, or with 'timeout' after ms, whichever comes first. The
 * work itself goes on (a ping, a libvips decode cannot be stopped); the caller stops waiting.
 */
export async function within<T>(ms: number, work: Promise<T>): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
