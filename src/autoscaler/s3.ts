import * as https from 'node:https';
import type { Readable } from 'node:stream';
import type * as S3Sdk from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import type * as HttpHandler from '@smithy/node-http-handler';
import type { Logger } from '../core';

/** The AWS SDK is loaded only when S3 is used (it costs about 20 MB and 130 ms at start). */
function sdk(): { s3: typeof S3Sdk; http: typeof HttpHandler } {
  return {
    s3: require('@aws-sdk/client-s3') as typeof S3Sdk,
    http: require('@smithy/node-http-handler') as typeof HttpHandler,
  };
}

export interface S3Settings {
  accessKey: string;
  secretKey: string;
  /** `nyc3.digitaloceanspaces.com` (https is assumed, as the original) or a full URL such as `http://127.0.0.1:4569`. */
  endpoint: string;
  bucket: string;
  ignoreSSL: boolean;
  /** Object ACL NodeODM gives the results; anything but public-read makes ClusterODM serve downloads itself. */
  acl: string;
  region?: string;
}

/** An object opened for streaming. */
export interface S3Object {
  body: Readable;
  contentType: string | undefined;
  contentLength: number | undefined;
}

export class S3NotFound extends Error {}

/** The endpoint as a URL (scheme added when missing). */
export function endpointUrl(endpoint: string): URL {
  return new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `https://${endpoint}`);
}

/** `https://<bucket>.<endpoint>`, where NodeODM's public results are (the original's getDownloadsBaseUrl). */
export function downloadsBaseUrl(s3: Pick<S3Settings, 'endpoint' | 'bucket'>): string {
  const u = endpointUrl(s3.endpoint);
  if (isIpOrLocal(u.hostname)) return `${u.protocol}//${u.host}/${s3.bucket}`;
  return `${u.protocol}//${s3.bucket}.${u.host}`;
}

function isIpOrLocal(host: string): boolean {
  return host === 'localhost' || /^\d+\.\d+\.\d+\.\d+$/.test(host) || host.startsWith('[');
}

/** The results bucket, through the AWS SDK v3 (signature v4). */
export class S3Store {
  private readonly client: S3Client;
  private readonly sdk = sdk();

  constructor(
    private readonly s: S3Settings,
    private readonly logger: Logger,
  ) {
    const url = endpointUrl(s.endpoint);
    const { S3Client } = this.sdk.s3;
    const { NodeHttpHandler } = this.sdk.http;
    this.client = new S3Client({
      region: s.region ?? 'us-east-1',
      endpoint: url.origin,
      // Virtual-host addressing cannot work with an IP address or localhost.
      forcePathStyle: isIpOrLocal(url.hostname),
      credentials: { accessKeyId: s.accessKey, secretAccessKey: s.secretKey },
      // ignoreSSL applies to this client only (the original changed a process-wide setting).
      ...(s.ignoreSSL ? { requestHandler: new NodeHttpHandler({ httpsAgent: new https.Agent({ rejectUnauthorized: false }) }) } : {}),
      maxAttempts: 2,
    });
  }

  get isPublic(): boolean {
    return this.s.acl === '' || this.s.acl === 'public-read';
  }

  /** Writes an empty test.txt (SPEC §8.1); throws the original's message. */
  async testBucket(): Promise<void> {
    try {
      await this.client.send(new this.sdk.s3.PutObjectCommand({ Bucket: this.s.bucket, Key: 'test.txt', Body: Buffer.alloc(0) }));
    } catch (e: unknown) {
      throw new Error(`Cannot connect to S3. Check your S3 configuration: ${s3ErrorCode(e)}`);
    }
    this.logger.info('Can write to S3');
  }

  /** Opens `key` for streaming (never buffered whole). Throws S3NotFound for a missing object. */
  async open(key: string, signal?: AbortSignal): Promise<S3Object> {
    try {
      const r = await this.client.send(new this.sdk.s3.GetObjectCommand({ Bucket: this.s.bucket, Key: key }), signal ? { abortSignal: signal } : {});
      return { body: r.Body as Readable, contentType: r.ContentType, contentLength: r.ContentLength };
    } catch (e: unknown) {
      if (e instanceof this.sdk.s3.S3ServiceException && (e.name === 'NoSuchKey' || e.$metadata.httpStatusCode === 404)) {
        throw new S3NotFound(key);
      }
      throw e;
    }
  }

  close(): void {
    this.client.destroy();
  }
}

function s3ErrorCode(e: unknown): string {
  if (e instanceof Error && '$metadata' in e) return e.name;
  if (typeof e === 'object' && e !== null && 'code' in e && typeof (e as { code: unknown }).code === 'string') {
    return (e as { code: string }).code;
  }
  return e instanceof Error ? e.message : String(e);
}
