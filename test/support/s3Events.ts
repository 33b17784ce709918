import { s3Client } from './fixtures.js';
import type { Backend } from './stores.js';

// Bucket notifications as each server sends them to a webhook, whole: the service reads few of
// the fields, and must take all the others as they come. Each is modelled on a capture or on
// the server's documentation, as noted.

export type S3EventName = `${'ObjectCreated' | 'ObjectRemoved' | 'ObjectAccessed'}:${string}`;

const hex = (c: string) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`;

/** Go's url.QueryEscape, as MinIO encodes a key: form encoding, "/" included. */
export const queryEscape = (key: string) => encodeURIComponent(key).replace(/[!'()*]/g, hex).replace(/%20/g, '+');

/** AWS S3's key encoding: form encoding, with "/" left as it is. */
export const awsEscape = (key: string) => key.split('/').map(queryEscape).join('/');

const isoNoMillis = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/**
 * One record of a MinIO webhook (MinIO RELEASE.2024+, `mc event add ... arn:minio:sqs::ID:webhook`).
 * eventName has the "s3:" prefix; the key is query-escaped.
 */
export function minioRecord(bucket: string, key: string, eventName: S3EventName = 'ObjectCreated:Put', encode = queryEscape) {
  return {
    eventVersion: '2.0',
    eventSource: 'minio:s3',
    awsRegion: '',
    eventTime: new Date().toISOString(),
    eventName: `s3:${eventName}`,
    userIdentity: { principalId: 'userjoin' },
    requestParameters: { principalId: 'userjoin', region: '', sourceIPAddress: '172.18.0.4' },
    responseElements: {
      'x-amz-id-2': 'dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8',
      'x-amz-request-id': '1800C2B6AA5C6F0E',
      'x-minio-deployment-id': '2e1b3b4a-6e1f-4a59-8a52-3b0b5d6f0a11',
      'x-minio-origin-endpoint': 'http://172.18.0.2:9000',
    },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: 'Config',
      bucket: { name: bucket, ownerIdentity: { principalId: 'userjoin' }, arn: `arn:aws:s3:::${bucket}` },
      object: {
        key: encode(key),
        size: 61,
        eTag: '5d41402abc4b2a76b9719d911017c592',
        contentType: 'text/csv',
        userMetadata: { 'content-type': 'text/csv' },
        sequencer: '1800C2B6AA9B1D34',
      },
    },
    source: { host: '172.18.0.4', port: '', userAgent: 'MinIO (linux; amd64) minio-go/v7.0.70 mc/RELEASE.2024-06-12T14-34-03Z' },
  };
}

/** A MinIO webhook body: one record, with the event name and "bucket/raw key" beside it. */
export function minioNotification(bucket: string, key: string, eventName: S3EventName = 'ObjectCreated:Put') {
  return { EventName: `s3:${eventName}`, Key: `${bucket}/${key}`, Records: [minioRecord(bucket, key, eventName)] };
}

/**
 * One record as AWS S3 sends it (event structure 2.1, docs.aws.amazon.com "Event message
 * structure"): no "s3:" prefix, the key form-encoded with "/" kept.
 */
export function awsRecord(bucket: string, key: string, eventName: S3EventName = 'ObjectCreated:Put') {
  return {
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: 'eu-west-1',
    eventTime: new Date().toISOString(),
    eventName,
    userIdentity: { principalId: 'AWS:AIDAJDPLRKLG7UEXAMPLE' },
    requestParameters: { sourceIPAddress: '203.0.113.15' },
    responseElements: {
      'x-amz-request-id': 'C3D13FE58DE4C810',
      'x-amz-id-2': 'FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD',
    },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: 'userjoin',
      bucket: { name: bucket, ownerIdentity: { principalId: 'A3NL1KOZZKExample' }, arn: `arn:aws:s3:::${bucket}` },
      object: { key: awsEscape(key), size: 61, eTag: 'd41d8cd98f00b204e9800998ecf8427e', versionId: '096fKKXTRTtl3on89fVO.nfljtsv6qko', sequencer: '0055AED6DCD90281E5' },
    },
  };
}

export function awsNotification(bucket: string, key: string, eventName: S3EventName = 'ObjectCreated:Put') {
  return { Records: [awsRecord(bucket, key, eventName)] };
}

/**
 * A Ceph radosgw 16.2 push, as captured from its HTTPS push endpoint: eventVersion 2.2, no
 * "s3:" prefix, the key raw UTF-8, metadata as a list of {key, val}, no EventName or Key
 * beside the records.
 */
export function radosgwNotification(bucket: string, key: string, eventName: S3EventName = 'ObjectCreated:Put', tenant = 't9f467cd6190942b4') {
  return {
    Records: [
      {
        eventVersion: '2.2',
        eventSource: 'ceph:s3',
        awsRegion: '',
        eventTime: `${new Date().toISOString().slice(0, -1)}000Z`,
        eventName,
        userIdentity: { principalId: 'tester' },
        requestParameters: { sourceIPAddress: '' },
        responseElements: { 'x-amz-request-id': '928b1b45-9891-4f25-986d-ac82342aeba6.4104.1489092471627208985', 'x-amz-id-2': '1008-default-default' },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId: 'userjoin',
          bucket: {
            name: bucket,
            ownerIdentity: { principalId: 'tester' },
            arn: `arn:aws:s3::${tenant}:${bucket}`,
            id: '928b1b45-9891-4f25-986d-ac82342aeba6.4106.1',
          },
          object: {
            key,
            size: 61,
            eTag: 'f69f5b72bc79a92dc70c63c9aa142e36',
            versionId: '',
            sequencer: '2447156B6184422A',
            metadata: [
              { key: 'x-amz-content-sha256', val: '5be08c9684a1d25efcee09318204824278b08bbfb4aef973ffefd0b9d7478313' },
              { key: 'x-amz-date', val: '20261206T112940Z' },
            ],
            tags: [],
          },
        },
        eventId: '1796556580.709002.f69f5b72bc79a92dc70c63c9aa142e36',
        opaqueData: '',
      },
    ],
  };
}

const SNS_TOPIC = 'arn:aws:sns:eu-west-1:123456789012:userjoin-src';
const snsSignature = {
  SignatureVersion: '1',
  Signature: 'EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=',
  SigningCertURL: 'https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem',
};

/** An Amazon SNS HTTP(S) delivery of an S3 event (or any message), raw message delivery off. */
export function snsNotification(message: unknown) {
  return {
    Type: 'Notification',
    MessageId: '22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324',
    TopicArn: SNS_TOPIC,
    Subject: 'Amazon S3 Notification',
    Message: JSON.stringify(message),
    Timestamp: isoNoMillis(),
    ...snsSignature,
    UnsubscribeURL: `https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=${SNS_TOPIC}:c9135db0-26c4-47ec-8998-413945fb5a96`,
  };
}

/** What SNS sends first to a new HTTP(S) subscription. */
export function snsSubscriptionConfirmation(subscribeUrl: string) {
  return {
    Type: 'SubscriptionConfirmation',
    MessageId: '165545c9-2a5c-472c-8df2-7ff2be2b3b1b',
    Token: '2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736',
    TopicArn: SNS_TOPIC,
    Message: `You have chosen to subscribe to the topic ${SNS_TOPIC}.\nTo confirm the subscription, visit the SubscribeURL included in this message.`,
    SubscribeURL: subscribeUrl,
    Timestamp: isoNoMillis(),
    ...snsSignature,
  };
}

/** What AWS S3 sends once through a destination it was just given. */
export function s3TestEvent(bucket: string) {
  return { Service: 'Amazon S3', Event: 's3:TestEvent', Time: isoNoMillis(), Bucket: bucket, RequestId: '5582815E1AEA5ADF', HostId: '8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE' };
}

/** The bucket's notification configuration, as the server gives it (GET ?notification). */
export async function bucketNotificationXml(backend: Backend, bucket: string): Promise<string> {
  const client = await s3Client(backend);
  const res = await client.makeRequestAsync({ method: 'GET', bucketName: bucket, query: 'notification' }, '', [200], 'us-east-1');
  let xml = '';
  for await (const c of res as AsyncIterable<Buffer>) xml += c.toString();
  return xml;
}
