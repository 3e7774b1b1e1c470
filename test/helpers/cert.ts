import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface SelfSignedCert {
  /** Paths of the PEM files. */
  keyFile: string;
  certFile: string;
  /** The certificate's PEM text (usable as `ca` by a client). */
  cert: Buffer;
}

const OPENSSL = fs.existsSync('/usr/bin/openssl') ? '/usr/bin/openssl' : 'openssl';

/** Generates a throw-away self-signed RSA key and certificate for CN=localhost into `dir` (key.pem, cert.pem). */
export function makeSelfSignedCert(dir: string): Promise<SelfSignedCert> {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  const args = ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost'];
  return new Promise((resolve, reject) => {
    execFile(OPENSSL, args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) return reject(new Error(`openssl failed: ${err.message}\n${stderr}`));
      resolve({ keyFile, certFile, cert: fs.readFileSync(certFile) });
    });
  });
}
