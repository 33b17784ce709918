import type { Context } from 'koa';
import { z } from 'zod';
import type { Database } from '../../db/index.js';
import { getUser } from '../../db/users.js';
import type { PhotoObject, Photos } from '../../images/photos.js';
import { MAX_WIDTH, MIN_WIDTH } from '../../images/photos.js';
import type { Operation } from '../api.js';
import { operation } from '../api.js';
import { notFound } from '../errors.js';
import { intParam, userIdPath } from '../params.js';

const CONTENT_TYPES: Record<string, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  tiff: 'image/tiff',
  avif: 'image/avif',
};

// Photos are personal data: no shared cache may keep them (private), and a browser asks again
// each time (no-cache), which costs a 304 while the photo is unchanged.
const PHOTO_CACHE_CONTROL = 'private, no-cache';

const photoQuery = z.strictObject({
  width: intParam(MIN_WIDTH, MAX_WIDTH, 'Answer a WebP at most this many pixels wide instead of the stored photo; photos are never enlarged').optional(),
});

const imageMedia = Object.fromEntries(Object.values(CONTENT_TYPES).map((t) => [t, {}]));

export function photoOperations(db: Database, photos: Photos): Operation[] {
  return [
    operation({
      method: 'get',
      path: '/data/:user_id/image',
      operationId: 'getUserPhoto',
      tag: 'users',
      access: 'api',
      summary: "The user's photo, as stored or resized",
      description:
        'As stored: the bytes of the object, with the content type of the format the run checked. With width: a WebP made ' +
        'from the first frame. Both carry an ETag; If-None-Match answers 304. The object is checked again on the way, as it ' +
        'may have changed since the run: a photo over MAX_IMAGE_BYTES or MAX_IMAGE_PIXELS, or one that no longer decodes, ' +
        'answers 422. A photo that has gone from the store answers 404.',
      params: userIdPath,
      query: photoQuery,
      responses: {
        200: {
          description: 'The photo',
          media: { ...imageMedia },
          headers: {
            ETag: { description: 'Changes when the stored object does', schema: { type: 'string' } },
            'Cache-Control': { description: PHOTO_CACHE_CONTROL, schema: { type: 'string' } },
          },
        },
        304: { description: 'Not modified since the ETag in If-None-Match' },
      },
      handler: async (ctx, { params, query }) => {
        const user = await getUser(db, params.user_id);
        if (!user) throw notFound(`no user with user_id ${JSON.stringify(params.user_id)}`);
        if (!user.img_path || !user.img_format) throw notFound(`user ${JSON.stringify(params.user_id)} has no photo`);
        // A PhotoError (gone, unusable, timed out) is answered by the error middleware.
        const photo = await photos.locate({ path: user.img_path });
        if (notModified(ctx, photos.etag(photo, query.width))) return;
        if (query.width === undefined) await sendOriginal(ctx, photos, photo, user.img_format);
        else {
          ctx.type = 'image/webp';
          ctx.body = await photos.resized(photo, query.width);
        }
      },
    }),
  ];
}

/** Sets the validators; answers 304 when the client's copy is current. */
function notModified(ctx: Context, etag: string): boolean {
  ctx.set('ETag', etag);
  ctx.set('Cache-Control', PHOTO_CACHE_CONTROL);
  ctx.status = 200;
  if (!ctx.fresh) return false;
  ctx.status = 304;
  return true;
}

async function sendOriginal(ctx: Context, photos: Photos, photo: PhotoObject, format: string): Promise<void> {
  ctx.type = CONTENT_TYPES[format] ?? 'application/octet-stream';
  // Whatever the bytes are now, a browser must not run them: no sniffing (set for every
  // answer), and no scripts or subresources should it render them as a document.
  ctx.set('Content-Security-Policy', "default-src 'none'; sandbox");
  ctx.length = photo.info.size;
  // HEAD sends no body: the object is not opened at all.
  if (ctx.method === 'HEAD') return;
  ctx.body = await photos.original(photo);
  ctx.length = photo.info.size;
}
