import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { ObjectStore, StoreWatch } from '../storage/index.js';
import type { EventIntake } from './eventIntake.js';

// Where events come from besides the webhook: the folder store's own watch, and an S3
// server told to send the source bucket's notifications to us.

/**
 * The folder store watches the source bucket, when WATCH allows; a failure to watch leaves
 * the scheduled runs to find changes, and is said once.
 */
export async function startWatch(config: Config, store: ObjectStore, intake: EventIntake, log: Logger): Promise<StoreWatch | null> {
  if (!config.events.watch || !store.watch) return null;
  const onKeys = (keys: string[]) =>
    void intake.accept('folder', keys).catch((err: unknown) => log.error({ err, keys: keys.length }, 'could not record folder events; the next scheduled run will find the changes'));
  const onError = (err: Error) => log.warn({ err }, 'the folder watch is incomplete (inotify watch limit?); the scheduled runs find what it misses');
  try {
    const w = await store.watch(config.srcBucket, onKeys, onError);
    log.info({ bucket: config.srcBucket }, 'watching the source folder');
    return w;
  } catch (err) {
    log.warn({ err }, 'could not watch the source folder; the scheduled runs will find changes');
    return null;
  }
}

/** S3_NOTIFY_ARN: have the S3 server send the source bucket's events to our webhook. */
export async function setUpNotifications(config: Config, store: ObjectStore, log: Logger): Promise<void> {
  const target = config.events.notifyTarget;
  if (!target) return;
  const { arn } = target;
  if (!store.notifyTo) {
    log.warn({ arn }, 'S3_NOTIFY_ARN is set, but the folder store has no notifications (it watches its folder instead)');
    return;
  }
  try {
    await store.notifyTo(config.srcBucket, target);
    log.info({ bucket: config.srcBucket, arn }, 'bucket notifications set');
  } catch (err) {
    // The scheduled runs still find every change, only later.
    log.error({ err, bucket: config.srcBucket, arn }, "could not set the bucket notifications; check S3_NOTIFY_ARN and the server's webhook target or topic");
  }
}
