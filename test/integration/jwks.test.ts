/** Tokens signed by an identity provider's key, fetched from its JWKS URL (a real HTTP server here). */
import { createServer } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Authenticator } from '../../src/api/auth.ts';
import { AuthError } from '../../src/errors.ts';

test('RS256 tokens verify against a JWKS URL; issuer and audience are enforced', async () => {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  const server = createServer((_req, res) => res.setHeader('content-type', 'application/json').end(JSON.stringify({ keys: [jwk] }))).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/.well-known/jwks.json`;
  try {
    const authenticator = new Authenticator({ jwksUrl: url, issuer: 'https://idp.clinic.example', audience: 'helssa-live', maxTtlS: 86400, clockSkewS: 60 });
    const sign = (claims: Record<string, unknown>, issuer = 'https://idp.clinic.example') =>
      new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setIssuer(issuer).setAudience('helssa-live').setExpirationTime('5m').setSubject('dr-1').sign(privateKey);
    const principal = await authenticator.verify(await sign({ role: 'viewer', session: 'v1' }));
    const { tokenId, ...claims } = principal;
    assert.equal(claims, { subject: 'dr-1', role: 'viewer', session: 'v1' });
    assert.match(tokenId, /^[0-9a-f]{32}$/);
    await authenticator.verify(await sign({ role: 'viewer' }, 'https://evil.example')).then(
      () => assert.unreachable(),
      (error) => assert.ok(error instanceof AuthError && error.status === 401),
    );
  } finally {
    server.close();
  }
});

test.run();
