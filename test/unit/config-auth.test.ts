import { SignJWT } from 'jose';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Authenticator } from '../../src/api/auth.ts';
import { AuthError } from '../../src/errors.ts';
import { loadConfig, loadWorkerConfig } from '../../src/config.ts';
import { signToken, TEST_JWT_SECRET } from '../support/tokens.ts';

const config = suite('config');
const RECIPIENT = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
const base = { OPENAI_API_KEY: 'k', JWT_SECRET: TEST_JWT_SECRET, ARCHIVE_RECIPIENTS: RECIPIENT };

config('defaults', () => {
  const c = loadConfig(base);
  assert.equal(c.PORT, 8080);
  assert.equal(c.VAD_AGGRESSIVENESS, 2);
  assert.equal(c.SEGMENT_MAX_WINDOW_MS, 28000);
});

config('every bad variable is named in one error', () => {
  try {
    loadConfig({ ...base, PORT: 'eighty', VAD_AGGRESSIVENESS: '7', STT_BASE_URL: 'not a url', SEGMENT_MAX_WINDOW_MS: '60000' });
    assert.unreachable();
  } catch (error) {
    const message = (error as Error).message;
    for (const name of ['PORT', 'VAD_AGGRESSIVENESS', 'STT_BASE_URL', 'SEGMENT_MAX_WINDOW_MS']) assert.ok(message.includes(name), `${name} named`);
  }
});

config('uploads, queue and WebRTC settings: defaults and the mistakes named', () => {
  const c = loadConfig(base);
  assert.equal([c.UPLOAD_MAX_BYTES, c.UPLOAD_MAX_DURATION_S, c.QUEUE_ATTEMPTS, c.WEBRTC_ICE_SERVERS], [500 * 1024 * 1024, 3600, 3, []]);
  assert.equal(loadConfig({ ...base, WEBRTC_ICE_SERVERS: '[{"urls":"stun:stun.example:3478"}]' }).WEBRTC_ICE_SERVERS, [{ urls: 'stun:stun.example:3478' }]);
  assert.throws(() => loadConfig({ ...base, UPLOAD_WORKERS: '0' }), /UPLOAD_WORKERS=0 needs REDIS_URL/);
  assert.throws(() => loadConfig({ ...base, WEBRTC_PORT_MIN: '40000' }), /WEBRTC_PORT_MIN/);
  assert.throws(() => loadConfig({ ...base, WEBRTC_ICE_SERVERS: 'stun:x' }), /WEBRTC_ICE_SERVERS: must be a JSON array/);
  assert.throws(() => loadConfig({ ...base, REDIS_URL: 'localhost:6379' }), /REDIS_URL: must be a redis/);
});

config('an upload worker needs only the STT endpoint, Redis and the key-encryption key', () => {
  const key = Buffer.alloc(32, 7).toString('base64');
  assert.is(loadWorkerConfig({ OPENAI_API_KEY: 'k', REDIS_URL: 'redis://127.0.0.1:6379', AT_REST_KEY: key }).WORKER_CONCURRENCY, 4);
  assert.throws(() => loadWorkerConfig({ OPENAI_API_KEY: 'k', AT_REST_KEY: key }), /REDIS_URL: required/);
  assert.throws(() => loadWorkerConfig({ OPENAI_API_KEY: 'k', REDIS_URL: 'redis://127.0.0.1:6379' }), /AT_REST_KEY: required/);
  assert.throws(() => loadWorkerConfig({ OPENAI_API_KEY: 'k', REDIS_URL: 'redis://127.0.0.1:6379', AT_REST_KEY: 'c2hvcnQ=' }), /32 random bytes/);
});

config('an empty variable means unset, everywhere', () => {
  const loaded = loadConfig({ ...base, DATABASE_URL: '', REDIS_URL: '', STT_LANGUAGE: ' ', PORT: '', WEBHOOK_URL: '' });
  assert.is(loaded.DATABASE_URL, undefined);
  assert.is(loaded.REDIS_URL, undefined);
  assert.is(loaded.STT_LANGUAGE, undefined);
  assert.is(loaded.PORT, 8080);
});

config('a signing key is required', () => {
  assert.throws(() => loadConfig({ OPENAI_API_KEY: 'k', ARCHIVE_RECIPIENTS: RECIPIENT }), /JWT_SECRET/);
  assert.throws(() => loadConfig({ ...base, JWT_SECRET: 'short' }), /32 characters/);
});

config('the archive refuses to run without a recipient unless explicitly, insecurely disabled', () => {
  assert.throws(() => loadConfig({ ...base, ARCHIVE_RECIPIENTS: '' }), /ARCHIVE_RECIPIENTS.*age recipient/s);
  assert.throws(() => loadConfig({ ...base, ARCHIVE_RECIPIENTS: 'ssh-ed25519 AAAA' }), /age public key/);
  assert.equal(loadConfig({ ...base, ARCHIVE_RECIPIENTS: '', ARCHIVE_INSECURE_DISABLE: 'true' }).ARCHIVE_RECIPIENTS, []);
  assert.equal(loadConfig({ ...base, ARCHIVE_RECIPIENTS: `${RECIPIENT}, ${RECIPIENT}` }).ARCHIVE_RECIPIENTS.length, 2);
  assert.throws(() => loadConfig({ ...base, ARCHIVE_STORE: 's3' }), /S3_BUCKET/);
});

config.run();

const auth = suite('auth');
const authenticator = new Authenticator({ secret: TEST_JWT_SECRET, maxTtlS: 86400, clockSkewS: 60 });

const rejects = async (promise: Promise<unknown>, status: number, pattern: RegExp) => {
  try {
    await promise;
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.instance(error, AuthError);
    assert.equal((error as AuthError).status, status);
    assert.match((error as Error).message, pattern);
  }
};

auth('a valid token gives its role and session', async () => {
  const principal = await authenticator.verify(await signToken({ role: 'producer', session: 's1' }));
  assert.equal(principal.role, 'producer');
  assert.equal(principal.session, 's1');
});

auth('missing, forged, expired and role-less tokens are 401', async () => {
  await rejects(authenticator.verify(undefined), 401, /missing token/);
  await rejects(authenticator.verify(await signToken({ role: 'viewer' }, { secret: 'another-secret-another-secret-another' })), 401, /invalid token/);
  const expired = await new SignJWT({ role: 'viewer' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(new TextEncoder().encode(TEST_JWT_SECRET));
  await rejects(authenticator.verify(expired), 401, /expired/);
  await rejects(authenticator.verify(await signToken({ role: 'admin' })), 401, /role/);
  await rejects(authenticator.verify('not.a.jwt'), 401, /invalid token/);
});

auth('a token without exp, living past JWT_MAX_TTL_S, or issued or valid only in the future is 401', async () => {
  const key = new TextEncoder().encode(TEST_JWT_SECRET);
  const now = Math.floor(Date.now() / 1000);
  const sign = (build: (jwt: SignJWT) => SignJWT) => build(new SignJWT({ role: 'viewer', session: 's1' }).setProtectedHeader({ alg: 'HS256' })).sign(key);
  await rejects(authenticator.verify(await sign((j) => j.setIssuedAt())), 401, /no expiry/);
  await rejects(authenticator.verify(await sign((j) => j.setIssuedAt().setExpirationTime(now + 100 * 365 * 86400))), 401, /lives too long/);
  await rejects(authenticator.verify(await sign((j) => j.setIssuedAt(now + 3600).setExpirationTime(now + 7200))), 401, /future/);
  await rejects(authenticator.verify(await sign((j) => j.setNotBefore(now + 3600).setExpirationTime(now + 7200))), 401, /nbf|invalid token/);
  // Within the clock skew: accepted.
  await authenticator.verify(await sign((j) => j.setIssuedAt(now + 30).setExpirationTime(now + 3600)));
});

auth('wrong role or wrong session is 403', () => {
  const p = (claims: { role: 'viewer' | 'producer' | 'service'; session?: string }) => ({ subject: 'x', tokenId: 't', ...claims });
  assert.throws(() => Authenticator.authorize(p({ role: 'viewer', session: 's1' }), ['producer'], 's1'), (e: AuthError) => e.status === 403);
  assert.throws(() => Authenticator.authorize(p({ role: 'producer', session: 's1' }), ['producer'], 's2'), (e: AuthError) => e.status === 403);
  assert.throws(() => Authenticator.authorize(p({ role: 'viewer' }), ['viewer'], 's1'), /names no session/);
  Authenticator.authorize(p({ role: 'service' }), ['service'], 's9');
  // A service token scoped to one session creates only that session and never sees every session.
  assert.throws(() => Authenticator.authorizeScope(p({ role: 'service', session: 'A' }), 'B'), (e: AuthError) => e.status === 403);
  assert.throws(() => Authenticator.authorizeScope(p({ role: 'service', session: 'A' }), undefined), (e: AuthError) => e.status === 403);
  Authenticator.authorizeScope(p({ role: 'service', session: 'A' }), 'A');
  Authenticator.authorizeScope(p({ role: 'service' }), undefined);
});

auth.run();
