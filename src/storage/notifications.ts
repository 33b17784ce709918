import { NotificationConfig, ObjectCreatedAll, ObjectRemovedAll, QueueConfig, TopicConfig } from 'minio';
import type { NotifyTarget } from '../config.js';

// The Id names the service's notification: radosgw requires one, and keeps notifications
// with other Ids on the bucket.
const NOTIFICATION_ID = 'userjoin';

/**
 * A bucket's notification configuration that sends created and removed objects to the
 * target: a QueueConfiguration for MinIO's queue ARNs, a TopicConfiguration with an Id for SNS
 * topics (radosgw, which refuses a QueueConfiguration with MalformedXML, and AWS).
 */
export function notificationConfig(target: NotifyTarget): NotificationConfig {
  const entry = target.kind === 'queue' ? new QueueConfig(target.arn) : new TopicConfig(target.arn);
  if (target.kind === 'topic') entry.setId(NOTIFICATION_ID);
  entry.addEvent(ObjectCreatedAll);
  entry.addEvent(ObjectRemovedAll);
  const config = new NotificationConfig();
  config.add(entry);
  return config;
}
