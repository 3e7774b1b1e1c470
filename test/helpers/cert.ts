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

export interface CaSignedCert {
  /** The CA's certificate (PEM file and text): what a client must trust, e.g. through NODE_EXTRA_CA_CERTS. */
  caFile: string;
  ca: Buffer;
  /** The server's key and certificate, signed by the CA, for the names given. */
  key: Buffer;
  cert: Buffer;
}

function openssl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(OPENSSL, args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) return reject(new Error(`openssl ${args[0] ?? ''} failed: ${err.message}\n${stderr}`));
      resolve();
    });
  });
}

/**
 * A throw-away CA and a server certificate it signed, valid for the IP addresses and DNS names given (as
 * subjectAltName entries: an address is only ever checked against those). Files go to `dir`.
 */
export async function makeCaSignedCert(dir: string, names: { ips?: string[]; dns?: string[] }): Promise<CaSignedCert> {
  const f = (n: string): string => path.join(dir, n);
  await openssl([
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca-key.pem'), '-out', f('ca.pem'), '-days', '1',
    '-subj', '/CN=ClusterODM test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server-key.pem'), '-out', f('server.csr'), '-subj', '/CN=test node']);
  const alt = [...(names.ips ?? []).map((ip) => `IP:${ip}`), ...(names.dns ?? []).map((d) => `DNS:${d}`)].join(',');
  fs.writeFileSync(f('server-ext.cnf'), `subjectAltName=${alt}\nextendedKeyUsage=serverAuth\n`);
  await openssl([
    'x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca-key.pem'), '-CAcreateserial',
    '-out', f('server.pem'), '-days', '1', '-extfile', f('server-ext.cnf'),
  ]);
  return { caFile: f('ca.pem'), ca: fs.readFileSync(f('ca.pem')), key: fs.readFileSync(f('server-key.pem')), cert: fs.readFileSync(f('server.pem')) };
}
