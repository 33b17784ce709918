import type { StoreConfig } from '../config.js';
import { FolderStore } from './folderStore.js';
import type { ObjectStore } from './objectStore.js';
import { S3Store } from './s3Store.js';

export type { ObjectInfo, ObjectStore, ReadHint, StoreWatch } from './objectStore.js';
export { ObjectNotFoundError, ObjectUnreadableError } from './objectStore.js';
export { FolderStore } from './folderStore.js';
export { S3Store } from './s3Store.js';

export function createStore(config: StoreConfig): ObjectStore {
  return config.kind === 'folder' ? new FolderStore(config.dir) : new S3Store(config);
}
