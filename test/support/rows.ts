import type { RowSource } from '../../src/core/model.js';

/** Lineage for rows a test writes directly: the CSV `<user_id>.csv`, no image. */
export const csvSource = (userId: string): RowSource => ({ csvKey: `${userId}.csv`, csvEtag: 'e', imgKey: null, imgEtag: null });
