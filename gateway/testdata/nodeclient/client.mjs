// A participant's client written from PROTOCOL.md alone, with Node's `jose`
// (not go-jose). Usage:
//   node client.mjs send  <gateway-url> <pki-dir> <from> <message.json>
//   node client.mjs inbox <gateway-url> <pki-dir> <recipient>
// It prints one JSON object on stdout.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { createHash } from 'node:crypto';
import * as jose from 'jose';

const [cmd, base, pki, id, file] = process.argv.slice(2);
const tls = {
  key: readFileSync(`${pki}/${id}/tls.key`),
  cert: readFileSync(`${pki}/${id}/tls.crt`),
  ca: readFileSync(`${pki}/ca.crt`),
  minVersion: 'TLSv1.3',
};

function call(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = request(base + path, { method, headers, ...tls }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

// §5: the gateway's keys.
const jwks = JSON.parse((await call('GET', '/v1/jwks')).body);
const gwSig = jose.createLocalJWKSet({ keys: jwks.keys.filter((k) => k.use === 'sig') });
const gwEnc = jwks.keys.find((k) => k.use === 'enc');

if (cmd === 'send') {
  const signJwk = JSON.parse(readFileSync(`${pki}/${id}/sign.jwk`, 'utf8'));
  const signKey = await jose.importJWK(signJwk, 'ES256');
  const msg = readFileSync(file);
  // §3: inner JWS, ES256, kid = RFC 7638 thumbprint, typ xborder+jws.
  const kid = await jose.calculateJwkThumbprint(signJwk, 'sha256');
  const jws = await new jose.CompactSign(msg)
    .setProtectedHeader({ alg: 'ES256', kid, typ: 'xborder+jws' })
    .sign(signKey);
  // §3: outer JWE, ECDH-ES+A256KW / A256GCM, kid of the gateway's key, cty xborder+jws.
  const encKey = await jose.importJWK(gwEnc, 'ECDH-ES+A256KW');
  const jwe = await new jose.CompactEncrypt(new TextEncoder().encode(jws))
    .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: gwEnc.kid, cty: 'xborder+jws' })
    .encrypt(encKey);
  const res = await call('POST', '/v1/messages', jwe, { 'Content-Type': 'application/jose' });
  const out = { status: res.status, answer: JSON.parse(res.body) };
  if (res.status === 202) {
    // §3.1: the receipt is a JWS by the gateway over the envelope's digest.
    const { payload, protectedHeader } = await jose.compactVerify(out.answer.receipt, gwSig, { algorithms: ['ES256'] });
    const receipt = JSON.parse(new TextDecoder().decode(payload));
    out.receipt = receipt;
    out.receipt_typ = protectedHeader.typ;
    out.receipt_digest_ok = receipt.envelope_sha256 === createHash('sha256').update(jwe).digest('hex');
  }
  console.log(JSON.stringify(out));
} else if (cmd === 'inbox') {
  const encJwk = JSON.parse(readFileSync(`${pki}/${id}/enc.jwk`, 'utf8'));
  const encKey = await jose.importJWK(encJwk, 'ECDH-ES+A256KW');
  const res = await call('GET', '/v1/inbox?max=10');
  const list = JSON.parse(res.body).deliveries;
  const deliveries = [];
  for (const d of list) {
    // §4: JWE to the recipient's key whose plaintext is the gateway's JWS.
    const { plaintext, protectedHeader: eh } = await jose.compactDecrypt(d.envelope, encKey, {
      keyManagementAlgorithms: ['ECDH-ES+A256KW'], contentEncryptionAlgorithms: ['A256GCM'],
    });
    const { payload, protectedHeader } = await jose.compactVerify(new TextDecoder().decode(plaintext), gwSig, { algorithms: ['ES256'] });
    const body = JSON.parse(new TextDecoder().decode(payload));
    const ack = await call('POST', `/v1/inbox/${d.delivery_id}/ack`);
    deliveries.push({ cty: eh.cty, typ: protectedHeader.typ, ack: ack.status, ...body });
  }
  console.log(JSON.stringify({ status: res.status, deliveries }));
} else {
  console.error('usage: client.mjs send|inbox ...');
  process.exit(2);
}
