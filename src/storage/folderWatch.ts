import type { Dirent, FSWatcher } from 'node:fs';
import { watch } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { decodeUtf8Lenient } from '../core/text.js';
import type { StoreWatch } from './objectStore.js';

// A burst of writes (a copy of many files, one file written in chunks) is reported once it
// pauses for QUIET_MS, and at least every MAX_WAIT_MS while it goes on.
const QUIET_MS = 100;
const MAX_WAIT_MS = 500;
const TMP_NAME = /^\.userjoin-tmp-[0-9a-f]{12}$/;

/**
 * Watches a bucket folder and everything below it, one inotify watch per folder (not per
 * file, so a flat folder of a million files costs one watch). Reports the keys whose files
 * were created, written, renamed or removed; the caller looks each one up, so an event never
 * has to be trusted about what happened.
 *
 * A folder created (or moved in) later is watched from then on, and the files already in it
 * are reported. What the kernel cannot tell (a watch limit reached, a folder moved out with
 * its files) is left to the periodic listing, which catches every change in the end.
 */
export async function watchFolder(root: string, onKeys: (keys: string[]) => void, onError: (err: Error) => void): Promise<StoreWatch> {
  // Folder path -> its watch, and the folder's inode: a folder removed or moved away and then
  // made again under the same name is another folder, to watch anew.
  const watchers = new Map<string, { watcher: FSWatcher; ino: number }>();
  // Key -> whether its entry was created, removed or renamed (not just written).
  let pending = new Map<string, boolean>();
  let quiet: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  let closed = false;
  let limitReported = false;

  const flush = () => {
    clearTimeout(quiet);
    clearTimeout(deadline);
    quiet = deadline = undefined;
    if (closed || pending.size === 0) return;
    const keys = [...pending];
    pending = new Map();
    void settle(keys);
  };

  // Folders among the keys are watched (and their files reported) instead of being reported;
  // a watched folder that is gone, or is another folder now, is dropped with those below it.
  const settle = async (keys: Array<[string, boolean]>) => {
    const files: string[] = [];
    await Promise.all(
      keys.map(async ([key, renamed]) => {
        const file = path.join(root, ...key.split('/'));
        const st = await fs.lstat(file).catch(() => null);
        const known = watchers.get(file);
        // A folder entry created, removed or renamed may be another folder now, even with the
        // same inode (a freed inode is soon reused): its old watch, and those below, go.
        if (known && (renamed || !st?.isDirectory() || st.ino !== known.ino)) unwatchTree(file);
        if (st?.isDirectory()) {
          if (!watchers.has(file)) await addTree(file, `${key}/`, true);
        } else files.push(key);
      }),
    );
    if (!closed && files.length > 0) onKeys(files);
  };

  const unwatchTree = (dir: string) => {
    for (const [d, { watcher }] of watchers) {
      if (d === dir || d.startsWith(dir + path.sep)) {
        watcher.close();
        watchers.delete(d);
      }
    }
  };

  const report = (key: string, renamed = false) => {
    pending.set(key, renamed || (pending.get(key) ?? false));
    clearTimeout(quiet);
    quiet = setTimeout(flush, QUIET_MS);
    deadline ??= setTimeout(flush, MAX_WAIT_MS);
  };

  const watchOne = (dir: string, prefix: string, ino: number): boolean => {
    if (closed || watchers.has(dir)) return false;
    let w: FSWatcher;
    try {
      w = watch(dir, { persistent: false, encoding: 'buffer' }, (type, name) => {
        if (!name) return;
        const decoded = decodeUtf8Lenient(name);
        // A name that is not UTF-8 has no key; the listing reports it.
        if (!decoded.valid || TMP_NAME.test(decoded.text)) return;
        report(prefix + decoded.text, type === 'rename');
      });
    } catch (err) {
      // ENOSPC: the inotify watch limit (fs.inotify.max_user_watches). Said once.
      if (!limitReported) onError(err as Error);
      limitReported = true;
      return false;
    }
    w.on('error', () => {
      // The folder is gone (its removal is reported by its parent's watch).
      w.close();
      if (watchers.get(dir)?.watcher === w) watchers.delete(dir);
    });
    watchers.set(dir, { watcher: w, ino });
    return true;
  };

  /** Watches dir and the folders below it; with reportFiles, reports the files found in them. */
  const addTree = async (dir: string, prefix: string, reportFiles: boolean) => {
    const stack: Array<[string, string]> = [[dir, prefix]];
    while (stack.length > 0 && !closed) {
      const [d, p] = stack.pop()!;
      const st = await fs.lstat(d).catch(() => null);
      if (!st?.isDirectory() || !watchOne(d, p, st.ino)) continue;
      try {
        // Streamed: a flat folder of a million files is never held as one array.
        // @types/node leaves out 'buffer' here, but Node supports it: names stay raw bytes.
        const listing = await fs.opendir(d, { encoding: 'buffer' as BufferEncoding, bufferSize: 256 });
        for await (const e of listing as AsyncIterable<Dirent<Buffer>>) {
          const name = decodeUtf8Lenient(e.name);
          if (!name.valid) continue;
          if (e.isDirectory()) stack.push([path.join(d, name.text), `${p}${name.text}/`]);
          else if (reportFiles && !TMP_NAME.test(name.text)) report(p + name.text);
        }
      } catch {
        // Removed meanwhile, or not listable: the listing reports it.
      }
    }
  };

  await addTree(root, '', false);
  return {
    close: () => {
      closed = true;
      clearTimeout(quiet);
      clearTimeout(deadline);
      for (const { watcher } of watchers.values()) watcher.close();
      watchers.clear();
    },
  };
}
