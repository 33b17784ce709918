import { describe, expect, it } from 'vitest';
import { notificationConfig } from '../src/storage/notifications.js';
import { parseListPage } from '../src/storage/s3Store.js';

const page = (body: string) => `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${body}</ListBucketResult>`;
const contents = (key: string) =>
  `<Contents><Key>${key}</Key><LastModified>2026-11-25T10:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>7</Size></Contents>`;

// s3rver ignores encoding-type, so the URL-encoded form real S3 and MinIO send is tested here.
describe('parseListPage', () => {
  it('decodes keys the server URL-encoded, as AWS S3 and MinIO do for encoding-type=url', () => {
    const p = parseListPage(page(`<EncodingType>url</EncodingType>${contents('100%25.csv')}${contents('a+b.csv')}${contents('a%2Bb.csv')}${contents('x%01y.csv')}${contents('Zo%C3%AB.csv')}`));
    expect(p.objects.map((o) => o.key)).toEqual(['100%.csv', 'a b.csv', 'a+b.csv', 'x\u0001y.csv', 'Zoë.csv']);
    expect(p.objects[0]).toEqual({ key: '100%.csv', size: 7, etag: 'abc', lastModified: new Date('2026-11-25T10:00:00.000Z') });
  });

  it('takes keys as they are when the server did not encode them, so "100%.csv" does not break the listing', () => {
    const p = parseListPage(page(`${contents('100%.csv')}${contents('a+b.csv')}${contents('  lead.csv')}${contents('0x10')}${contents('q&#x27;&quot;&amp;lt;.csv')}`));
    expect(p.objects.map((o) => o.key)).toEqual(['100%.csv', 'a+b.csv', '  lead.csv', '0x10', 'q\'"&lt;.csv']);
  });

  it('reports one key it cannot decode instead of failing the page', () => {
    const p = parseListPage(page(`<EncodingType>url</EncodingType>${contents('%FF.csv')}${contents('ok.csv')}`));
    expect(p.objects).toMatchObject([
      { key: '%FF.csv', problem: 'the server listed its key in an encoding that cannot be decoded' },
      { key: 'ok.csv' },
    ]);
    expect(p.objects[1]!.problem).toBeUndefined();
  });

  it('follows continuation tokens', () => {
    expect(parseListPage(page(`<IsTruncated>true</IsTruncated><NextContinuationToken>t+/=</NextContinuationToken>${contents('a.csv')}`))).toMatchObject({
      truncated: true,
      nextToken: 't+/=',
    });
    expect(parseListPage(page('<IsTruncated>false</IsTruncated>'))).toEqual({ objects: [], truncated: false, nextToken: '' });
  });
});

// What the minio client renders as the NotificationConfiguration XML, element for element.
describe('notificationConfig', () => {
  const events = ['s3:ObjectCreated:*', 's3:ObjectRemoved:*'];
  const plain = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

  it("sends MinIO's queue target a QueueConfiguration", () => {
    expect(plain(notificationConfig({ kind: 'queue', arn: 'arn:minio:sqs::USERJOIN:webhook' }))).toEqual({
      QueueConfiguration: [{ Queue: 'arn:minio:sqs::USERJOIN:webhook', Event: events }],
    });
  });

  it('sends an SNS topic (radosgw, AWS) a TopicConfiguration with an Id, which radosgw requires', () => {
    expect(plain(notificationConfig({ kind: 'topic', arn: 'arn:aws:sns:default:tenant:userjoin' }))).toEqual({
      TopicConfiguration: [{ Id: 'userjoin', Topic: 'arn:aws:sns:default:tenant:userjoin', Event: events }],
    });
  });
});
